"""An LLM judge for factual answers, through any OpenAI-compatible endpoint.

The prompt is the paper's (Kang et al., 2025, reference code
`exps_research/unified_framework/score_answers.py`, where gpt-4o-mini judged):
the question, the predicted and the gold answer, and a request for a JSON
object `{explanation, score}` with score 0 or 1. Predictions are cut to 1,000
characters, as the reference meant to. The reply is parsed leniently (a JSON
object anywhere in it, else a `score: 0|1` pattern); an unreadable reply is a
`JudgeError`, never a silent 0.

Not covered: structured-output enforcement (`response_format`), which not
every server supports; cost tracking.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeagent.engines.base import Message
from edgeagent.errors import UserError

if TYPE_CHECKING:
    from edgeagent.engines.openai_http import OpenAIEngine

JUDGE_PROMPT = """Compare the following predicted answer with the gold (correct) answer and determine if they match in meaning given the question.
Be reasonable - phrasing differences are okay if the core meaning is the same. You should accept the aliases and the answer conveying the same conclusion.
If the predicted answer is overly verbose and fails to capture the key information found in the gold answer (i.e., low recall), consider it a false answer.

Question: {question}
Predicted answer: {predicted}
Gold answer: {gold}

Output your evaluation as a JSON object with two fields:
- explanation: Brief explanation of your scoring decision
- score: 0 or 1 indicating if answers match
"""  # noqa: E501

MAX_PREDICTION_CHARS = 1000


class JudgeError(UserError):
    """The judge's reply could not be read as a verdict."""


@dataclass(frozen=True)
class Verdict:
    correct: bool
    explanation: str


def judge_prompt(question: str, predicted: str, gold: str) -> str:
    return JUDGE_PROMPT.format(
        question=question, predicted=str(predicted)[:MAX_PREDICTION_CHARS], gold=gold)


def parse_verdict(reply: str) -> Verdict:
    """Read `{"explanation": …, "score": 0|1}` out of a judge's reply."""
    text = reply.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    candidates = [fenced.group(1)] if fenced else []
    candidates += re.findall(r"\{.*\}", text, re.DOTALL)
    for raw in candidates:
        try:
            data: Any = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "score" in data:
            try:
                score = int(float(data["score"]))
            except (TypeError, ValueError):
                continue
            if score in (0, 1):
                return Verdict(score == 1, str(data.get("explanation", "")))
    m = re.search(r"\"?score\"?\s*[:=]\s*\"?([01])\b", text, re.IGNORECASE)
    if m:
        return Verdict(m.group(1) == "1", text)
    raise JudgeError(f"the judge's reply has no score 0 or 1: {text[:120]!r}")


class LLMJudge:
    """Scores (question, predicted, gold) with a model behind an OpenAI-compatible URL."""

    def __init__(self, engine: OpenAIEngine, *, max_tokens: int = 256) -> None:
        self.engine = engine
        self.max_tokens = max_tokens

    @classmethod
    def from_url(cls, url: str, *, model: str | None = None, **kwargs: Any) -> LLMJudge:
        from edgeagent.engines.openai_http import OpenAIEngine

        return cls(OpenAIEngine(url, model=model, **kwargs))

    def __call__(self, question: str, predicted: str, gold: str) -> Verdict:
        messages: list[Message] = [
            {"role": "user", "content": judge_prompt(question, predicted, gold)}]
        completion = self.engine.generate(
            messages, n=1, temperature=0.0, max_tokens=self.max_tokens)[0]
        return parse_verdict(completion.text)

    def close(self) -> None:
        self.engine.close()
