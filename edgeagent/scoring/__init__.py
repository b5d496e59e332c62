r"""Is an answer correct? One scorer for trajectory filtering and the eval harness.

    from edgeagent.scoring import score_answer
    score_answer("so \\boxed{\\dfrac{9}{14}}", "\\frac{9}{14}", dataset="math").correct  # True
    score_answer("the Eiffel Tower", "Eiffel Tower", kind="qa").em                    # 1.0

- math (`math_equiv`, `extract`): the last `\boxed{}` of the prediction (else
  the whole answer), GSM8K `#### N` golds, symbolic equivalence with sympy;
- factual QA (`qa`): SQuAD-normalised exact match and token F1; `correct` is
  exact match, or the LLM judge's verdict when a `judge` is given (`judge`,
  the paper's prompt, any OpenAI-compatible endpoint).

`task_kind` decides math vs QA from the dataset name (gsm8k, math, aime, …
vs hotpotqa, musique, 2wiki, …), else from the gold answer's look.

Not covered: running models (engines), reading benchmark files (the eval harness).
No torch, no network unless a judge is given.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from edgeagent.scoring.extract import gsm8k_gold, last_boxed, math_answer
from edgeagent.scoring.math_equiv import math_equal
from edgeagent.scoring.math_normalize import normalize_math
from edgeagent.scoring.qa import exact_match, normalize_answer, token_f1

if TYPE_CHECKING:
    from edgeagent.scoring.judge import LLMJudge

Kind = Literal["math", "qa"]

MATH_DATASETS = ("gsm8k", "gsm_hard", "gsm-hard", "gsmhard", "math", "aime", "olymath", "amc",
                 "svamp", "asdiv")
QA_DATASETS = ("hotpotqa", "musique", "2wiki", "bamboogle", "nq", "triviaqa", "popqa", "qa")

__all__ = [
    "Kind",
    "Score",
    "exact_match",
    "gsm8k_gold",
    "last_boxed",
    "math_answer",
    "math_equal",
    "normalize_answer",
    "normalize_math",
    "score_answer",
    "task_kind",
    "token_f1",
]


@dataclass(frozen=True)
class Score:
    """One scored answer: `correct` plus what it was decided on."""

    correct: bool
    kind: Kind
    method: str  # "math-equiv" | "exact-match" | "judge"
    prediction: str  # the extracted answer
    gold: str
    em: float | None = None
    f1: float | None = None
    explanation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_kind(dataset: str | None = None, gold: object = None) -> Kind:
    """"math" or "qa", from the dataset name, else from the gold answer."""
    name = (dataset or "").lower()
    for key in QA_DATASETS:
        if key in name:
            return "qa"
    for key in MATH_DATASETS:
        if key in name:
            return "math"
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return "math"
    text = str(gold or "")
    if "####" in text or "\\" in text or re.fullmatch(r"\s*-?[\d.,/]+\s*", text):
        return "math"
    return "qa"


def score_answer(
    prediction: object,
    gold: object,
    *,
    kind: Kind | None = None,
    dataset: str | None = None,
    question: str = "",
    judge: LLMJudge | None = None,
) -> Score:
    """Score one prediction against its gold answer (see module docstring)."""
    kind = kind or task_kind(dataset, gold)
    if kind == "math":
        pred = math_answer(prediction)
        ref = math_answer(gold)
        return Score(math_equal(pred, ref), "math", "math-equiv", pred, ref)
    pred_text = "" if prediction is None else str(prediction)
    boxed = last_boxed(pred_text)
    pred = boxed if boxed is not None else pred_text.strip()
    golds = [str(g) for g in gold] if isinstance(gold, (list, tuple)) else [str(gold)]
    em = float(exact_match(pred, golds))
    f1 = token_f1(pred, golds)
    if judge is not None:
        verdict = judge(question, pred, golds[0] if len(golds) == 1 else " | ".join(golds))
        return Score(verdict.correct, "qa", "judge", pred, golds[0], em, f1, verdict.explanation)
    return Score(bool(em), "qa", "exact-match", pred, golds[0], em, f1)
