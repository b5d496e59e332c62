"""`distill filter`: keep correct trajectories without parse errors.

The paper's rule (`filter_agent_training_data.py`): a trajectory is kept when
its answer is correct and no step failed to parse and it did not run out of
steps; steps whose code raised stay in (the student learns to recover from
execution errors). Parsing is judged by the paper's strict step parser
(`paper_format.paper_code_blobs`: an unclosed fence cut at `max_tokens` is a
parse error there), although inference parses leniently.

Correctness is `edgeagent.scoring.score_answer`, the eval harness's scorer.
Math: symbolic equivalence. Factual QA, by one criterion (`QaCriterion`):
exact match (default), token F1 at or above a threshold (keeps correct
rephrasings), or an LLM judge (the paper's choice). Every QA record that
reaches scoring is counted under each criterion the run can evaluate (exact
match, F1 at the threshold, and the judge when given), so the report says how
many each would keep. Cheap structural checks run first, so the judge only
sees trajectories that could be kept.

Every dropped record gets one reason (the first that applies, in this order):
cancelled, engine error, no messages, no gold, no answer, parse error, max
steps (the answer came from the fallback call), wrong answer.

Not covered: deduplication, length limits (the SFT renderer reports those).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgeagent.agent.paper_format import paper_code_blobs
from edgeagent.agent.trajectory import Trajectory, append_records, iter_records
from edgeagent.atomic import atomic_output
from edgeagent.errors import UserError
from edgeagent.scoring import Score, score_answer, task_kind

if TYPE_CHECKING:
    from edgeagent.scoring.judge import LLMJudge

PARSE_ERROR_MARK = "Error in code parsing"
REASONS = ("cancelled", "engine error", "no messages", "no gold", "no answer", "parse error",
           "max steps", "wrong answer")
DEFAULT_F1 = 0.8


@dataclass(frozen=True)
class QaCriterion:
    """How a factual answer counts as correct: the judge, else F1 >= `f1`, else exact match."""

    judge: LLMJudge | None = None
    f1: float | None = None

    def __post_init__(self) -> None:
        if self.f1 is not None and not 0.0 < self.f1 <= 1.0:
            raise UserError("--f1 must be in (0, 1]")

    @property
    def name(self) -> str:
        if self.judge is not None:
            return "judge"
        return f"F1 >= {self.f1:g}" if self.f1 is not None else "exact match"


@dataclass
class FilterReport:
    total: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    criterion: str = "exact match"
    f1_shown: float = DEFAULT_F1
    qa_scored: int = 0
    qa_keeps: Counter[str] = field(default_factory=Counter)  # criterion -> correct count

    def lines(self) -> list[str]:
        out = [f"kept {self.kept} of {self.total} trajectories"]
        for reason in REASONS:
            if self.dropped[reason]:
                out.append(f"  dropped {self.dropped[reason]:>5}  {reason}")
        if self.qa_scored:
            keeps = ", ".join(f"{name} keeps {n}" for name, n in self.qa_keeps.items())
            out.append(f"  QA answers scored: {self.qa_scored}; {keeps} "
                       f"(used: {self.criterion})")
        return out


def has_parse_error(traj: Trajectory) -> bool:
    """A step the reference agent could not parse ("Error in code parsing")."""
    for step in traj.steps:
        if step.code is None and step.error:
            return True
        if step.code is not None and step.text and paper_code_blobs(step.text) is None:
            return True  # lenient here, a parse error for the paper's parser
        if PARSE_ERROR_MARK in step.observation or PARSE_ERROR_MARK in (step.error or ""):
            return True
    return any(m["role"] == "user" and PARSE_ERROR_MARK in m["content"]
               for m in traj.messages[2:])


def structural_reason(traj: Trajectory) -> str | None:
    """The first drop reason that needs no scoring, or None."""
    if traj.cancelled:
        return "cancelled"
    if traj.error and traj.answer is None:
        return "engine error"
    if not any(m["role"] == "assistant" for m in traj.messages):
        return "no messages"
    if traj.gold is None or str(traj.gold).strip() == "":
        return "no gold"
    if traj.answer is None or not str(traj.answer).strip():
        return "no answer"
    if has_parse_error(traj):
        return "parse error"
    if traj.from_fallback:
        return "max steps"
    return None


def _score(traj: Trajectory, criterion: QaCriterion, report: FilterReport | None) -> bool:
    if task_kind(traj.dataset, traj.gold) == "math":
        return score_answer(traj.answer, traj.gold, dataset=traj.dataset).correct
    plain: Score = score_answer(traj.answer, traj.gold, kind="qa")
    f1 = plain.f1 or 0.0
    verdict = None
    if criterion.judge is not None:
        verdict = score_answer(traj.answer, traj.gold, kind="qa", question=traj.question,
                               judge=criterion.judge).correct
    if report is not None:
        report.qa_scored += 1
        shown = criterion.f1 if criterion.f1 is not None else report.f1_shown
        report.qa_keeps["exact match"] += bool(plain.em)
        report.qa_keeps[f"F1 >= {shown:g}"] += f1 >= shown
        if verdict is not None:
            report.qa_keeps["judge"] += verdict
    if verdict is not None:
        return verdict
    if criterion.f1 is not None:
        return f1 >= criterion.f1
    return bool(plain.em)


def drop_reason(traj: Trajectory, judge: LLMJudge | None = None, *,
                criterion: QaCriterion | None = None,
                report: FilterReport | None = None) -> str | None:
    """Why this trajectory is not training data, or None to keep it (sets `traj.score`)."""
    reason = structural_reason(traj)
    if reason is not None:
        return reason
    criterion = criterion or QaCriterion(judge=judge)
    correct = _score(traj, criterion, report)
    traj.score = 1.0 if correct else 0.0
    return None if correct else "wrong answer"


def filter_records(
    records: Iterable[Trajectory], judge: LLMJudge | None = None, *, f1: float | None = None
) -> tuple[list[Trajectory], FilterReport]:
    criterion = QaCriterion(judge=judge, f1=f1)
    report = FilterReport(criterion=criterion.name)
    kept: list[Trajectory] = []
    for traj in records:
        report.total += 1
        reason = drop_reason(traj, criterion=criterion, report=report)
        if reason is None:
            kept.append(traj)
        else:
            report.dropped[reason] += 1
    report.kept = len(kept)
    return kept, report


def filter_file(src: Path, dest: Path, judge: LLMJudge | None = None, *,
                f1: float | None = None) -> FilterReport:
    """Filter `src` into `dest` (written whole, then renamed into place)."""
    kept, report = filter_records(iter_records(src), judge, f1=f1)
    with atomic_output(dest) as tmp:
        append_records(tmp, kept)
    return report


def filter_path(src: Path, dest: Path, *, judge_url: str | None = None,
                judge_model: str | None = None, f1: float | None = None) -> FilterReport:
    """`filter_file` with the judge (an OpenAI-compatible URL) opened and closed here."""
    if not src.exists():
        raise UserError(f"no such file: {src}")
    judge = None
    if judge_url:
        from edgeagent.scoring.judge import LLMJudge

        judge = LLMJudge.from_url(judge_url, model=judge_model)
    try:
        return filter_file(src, dest, judge, f1=f1)
    finally:
        if judge is not None:
            judge.close()
