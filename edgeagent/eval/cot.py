r"""The non-agent modes: `cot` (the paper's CoT prompt) and `direct` (answer only).

    runner = CotRunner(engine, mode="cot", votes=1)
    traj = runner.run("What is 2+2?", task_id="q1", gold="4", dataset="gsm8k")

One chat: the mode's system prompt (`edgeagent/prompts/cot.toml`) and the bare
question, as the reference's reasoning processor sends it. The answer is the
first `<answer>…</answer>` (the reference's `re.search`), else the last
`\boxed{}`, else the whole reply (again the reference's fallback, flagged as a
parse error). Generation stops at `</answer>`, which is put back in the text.
With `votes > 1` the N samples come from one batched call and the most common
normalised answer wins (ties: earliest), as the reference's majority vote.

The result is a `Trajectory` in the shared schema with one step and no code:
`thought` = the reply, `final_answer` = the extracted answer, `error` set when
no tag or box was found; `candidates`/`votes` when voting.

Not covered: the agent loop (`edgeagent.agent.loop`), scoring.
"""

from __future__ import annotations

import re
import time
import tomllib
import uuid
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from edgeagent.agent.trajectory import CandidateRecord, StepRecord, Trajectory
from edgeagent.engines.base import Engine, Message
from edgeagent.errors import UserError
from edgeagent.scoring import last_boxed, math_answer, normalize_answer, normalize_math, task_kind

Mode = Literal["cot", "direct"]
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
STOP = "</answer>"
NO_ANSWER = "no <answer> tag or \\boxed{} in the reply"


@dataclass(frozen=True)
class CotPrompts:
    version: str
    systems: dict[str, str]


@lru_cache(maxsize=1)
def load_cot_prompts() -> CotPrompts:
    """Parse `edgeagent/prompts/cot.toml`."""
    raw = resources.files("edgeagent").joinpath("prompts", "cot.toml").read_text("utf-8")
    data = tomllib.loads(raw)
    return CotPrompts(str(data["prompt_version"]),
                      {"cot": data["cot"]["system"], "direct": data["direct"]["system"]})


def extract_answer(text: str) -> tuple[str, bool]:
    """(answer, found): the `<answer>` content, else the last box, else the whole text."""
    m = ANSWER_TAG.search(text)
    if m:
        return m.group(1).strip(), True
    boxed = last_boxed(text)
    if boxed is not None:
        return f"\\boxed{{{boxed}}}", True
    return text.strip(), False


def vote_key(answer: str, found: bool, dataset: str | None) -> str:
    """What counts as "the same answer" for majority voting."""
    if not found:
        return ""
    if task_kind(dataset, answer) == "math":
        return normalize_math(math_answer(answer))
    return normalize_answer(answer)


class CotRunner:
    """One model and a mode; `run(question)` returns a one-step trajectory."""

    def __init__(self, engine: Engine, *, mode: Mode = "cot", votes: int = 1,
                 temperature: float | None = None, top_p: float | None = None,
                 max_tokens: int = 1024, seed: int | None = None,
                 model_name: str | None = None) -> None:
        if mode not in ("cot", "direct"):
            raise UserError(f"unknown mode {mode!r}")
        if votes < 1:
            raise UserError("votes must be at least 1")
        self.engine = engine
        self.mode = mode
        self.votes = votes
        voting = votes > 1
        self.temperature = temperature if temperature is not None else (0.4 if voting else 0.0)
        self.top_p = top_p if top_p is not None else (0.8 if voting else 1.0)
        self.max_tokens = max_tokens
        self.seed = seed
        self.prompts = load_cot_prompts()
        self.model_name = model_name or str(getattr(engine, "name", "model"))

    def messages(self, question: str) -> list[Message]:
        return [{"role": "system", "content": self.prompts.systems[self.mode]},
                {"role": "user", "content": question}]

    def run(self, question: str, *, task_id: str | None = None, gold: Any = None,
            dataset: str | None = None) -> Trajectory:
        """Answer one question; an engine `UserError` becomes `traj.error`."""
        started = time.perf_counter()
        messages = self.messages(question)
        traj = Trajectory(
            id=task_id or uuid.uuid4().hex[:12], question=question, model=self.model_name,
            engine=type(self.engine).__name__,
            prompt_version=f"{self.prompts.version}:{self.mode}", gold=gold, dataset=dataset,
        )
        traj.tokens = {"prompt": 0, "completion": 0, "prompt_evaluated": 0}
        try:
            comps = self.engine.generate(
                messages, n=self.votes, temperature=self.temperature, top_p=self.top_p,
                max_tokens=self.max_tokens, stop=[STOP], seed=self.seed)
        except UserError as exc:
            traj.error = str(exc)
            traj.messages = messages
            traj.timings = {"total_s": round(time.perf_counter() - started, 4)}
            return traj
        gen_s = time.perf_counter() - started
        traj.tokens["prompt"] = comps[0].prompt_tokens
        traj.tokens["completion"] = sum(c.completion_tokens for c in comps)
        traj.tokens["prompt_evaluated"] = sum(c.timings.prompt_tokens_evaluated for c in comps)
        texts = [c.text + (STOP if c.stop == STOP else "") for c in comps]
        extracted = [extract_answer(t) for t in texts]
        keys = [vote_key(a, ok, dataset) for a, ok in extracted]
        chosen, groups = _majority(keys)
        answer, found = extracted[chosen]
        step = StepRecord(
            thought=texts[chosen], code=None, observation="",
            error=None if found else NO_ANSWER, final=True, final_answer=answer,
            text=texts[chosen], timings={"generate_s": round(gen_s, 4), "execute_s": 0.0},
        )
        if self.votes > 1:
            step.candidates = [CandidateRecord(text=t, key=k, ok=ok)
                               for t, k, (_, ok) in zip(texts, keys, extracted, strict=True)]
            step.votes = groups
            step.chosen = chosen
        traj.steps = [step]
        traj.answer = answer
        traj.messages = [*messages, {"role": "assistant", "content": texts[chosen]}]
        traj.timings = {"total_s": round(time.perf_counter() - started, 4),
                        "generate_s": round(gen_s, 4), "execute_s": 0.0}
        return traj


def _majority(keys: list[str]) -> tuple[int, dict[str, list[int]]]:
    """Index of the first member of the largest non-empty group (ties: earliest), groups."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    real = {k: v for k, v in groups.items() if k}
    if not real:
        return 0, groups
    best = max(real.values(), key=lambda idx: (len(idx), -idx[0]))
    return best[0], groups
