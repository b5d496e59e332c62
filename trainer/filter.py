"""`distill filter`: keep correct trajectories without parse errors.

The paper's rule (`filter_agent_training_data.py`): a trajectory is kept when
its answer is correct and no step failed to parse and it did not run out of
steps; steps whose code raised stay in (the student learns to recover from
execution errors). Correctness is `edgeagent.scoring.score_answer` — the same
scorer the eval harness uses — with an optional LLM judge for factual QA.
Cheap structural checks run first, so the judge only sees trajectories that
could be kept.

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

from edgeagent.agent.trajectory import Trajectory, append_records, iter_records
from edgeagent.atomic import atomic_output
from edgeagent.errors import UserError
from edgeagent.scoring import score_answer

if TYPE_CHECKING:
    from edgeagent.scoring.judge import LLMJudge

PARSE_ERROR_MARK = "Error in code parsing"
REASONS = ("cancelled", "engine error", "no messages", "no gold", "no answer", "parse error",
           "max steps", "wrong answer")


@dataclass
class FilterReport:
    total: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"kept {self.kept} of {self.total} trajectories"]
        for reason in REASONS:
            if self.dropped[reason]:
                out.append(f"  dropped {self.dropped[reason]:>5}  {reason}")
        return out


def has_parse_error(traj: Trajectory) -> bool:
    """A step whose output had no runnable code (the reference's "Error in code parsing")."""
    for step in traj.steps:
        if step.code is None and step.error:
            return True
        if PARSE_ERROR_MARK in step.observation or PARSE_ERROR_MARK in (step.error or ""):
            return True
    return any(m["role"] == "user" and PARSE_ERROR_MARK in m["content"]
               for m in traj.messages[2:])


def drop_reason(traj: Trajectory, judge: LLMJudge | None = None) -> str | None:
    """Why this trajectory is not training data, or None to keep it (sets `traj.score`)."""
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
    score = score_answer(traj.answer, traj.gold, dataset=traj.dataset, question=traj.question,
                         judge=judge)
    traj.score = 1.0 if score.correct else 0.0
    return None if score.correct else "wrong answer"


def filter_records(
    records: Iterable[Trajectory], judge: LLMJudge | None = None
) -> tuple[list[Trajectory], FilterReport]:
    report = FilterReport()
    kept: list[Trajectory] = []
    for traj in records:
        report.total += 1
        reason = drop_reason(traj, judge)
        if reason is None:
            kept.append(traj)
        else:
            report.dropped[reason] += 1
    report.kept = len(kept)
    return kept, report


def filter_file(src: Path, dest: Path, judge: LLMJudge | None = None) -> FilterReport:
    """Filter `src` into `dest` (written whole, then renamed into place)."""
    kept, report = filter_records(iter_records(src), judge)
    with atomic_output(dest) as tmp:
        append_records(tmp, kept)
    return report


def filter_path(src: Path, dest: Path, *, judge_url: str | None = None,
                judge_model: str | None = None) -> FilterReport:
    """`filter_file` with the judge (an OpenAI-compatible URL) opened and closed here."""
    if not src.exists():
        raise UserError(f"no such file: {src}")
    judge = None
    if judge_url:
        from edgeagent.scoring.judge import LLMJudge

        judge = LLMJudge.from_url(judge_url, model=judge_model)
    try:
        return filter_file(src, dest, judge)
    finally:
        if judge is not None:
            judge.close()
