"""Per-question numbers from a trajectory record, and their per-benchmark means.

`record_metrics(traj, kind, judged)` scores the record's answer with the shared
scorer (`edgeagent.scoring.score_answer`; EM/F1 and math equivalence are
cheap and deterministic, so they are recomputed from the stored answer; a
judge's verdict is not, so it is read back from the record's `score`) and
counts its steps:

- `steps`: actions taken (the fallback answer call is not a step; see `fallback`)
- `tool_calls`: actions whose code ran; `searches`: `web_search(` calls
  written in that code (a static count: a call inside a loop counts once)
- `parse_errors`: actions with no runnable code (for cot/direct: no
  `<answer>` tag or box); `exec_errors`: actions whose code raised
- tokens (prompt, completion) and wall seconds of the whole question

`aggregate(rows, kind)` averages them for one benchmark: `score` (the headline
number: math-equivalence accuracy for math; judge accuracy for QA when judged,
else exact match), `em`/`f1`/`judge` (QA), `accuracy` (math), rates per step,
means per question. `average(per_bench)` is the macro mean over benchmarks.

Not covered: running models, files (see `runner`), confidence intervals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeagent.scoring import Kind, score_answer

if TYPE_CHECKING:
    from edgeagent.agent.trajectory import Trajectory


def record_metrics(traj: Trajectory, kind: Kind, *, judged: bool = False) -> dict[str, Any]:
    """The numbers of one question (see module docstring)."""
    s = score_answer(traj.answer, traj.gold, kind=kind, dataset=traj.dataset,
                     question=traj.question)
    row: dict[str, Any] = {"id": traj.id, "correct": float(s.correct)}
    if kind == "qa":
        row["em"] = float(s.em or 0.0)
        row["f1"] = float(s.f1 or 0.0)
        if judged:
            row["judge"] = float(traj.score or 0.0)
    steps = traj.steps
    ran = [st for st in steps if st.code is not None]
    row.update(
        steps=len(steps),
        tool_calls=len(ran),
        searches=sum(st.code.count("web_search(") for st in ran if st.code),
        parse_errors=sum(1 for st in steps if st.code is None and st.error),
        exec_errors=sum(1 for st in ran if st.error),
        answered=float(traj.answer is not None and traj.answer.strip() != ""),
        fallback=float(traj.from_fallback),
        prompt_tokens=int(traj.tokens.get("prompt", 0)),
        completion_tokens=int(traj.tokens.get("completion", 0)),
        seconds=float(traj.timings.get("total_s", 0.0) or 0.0),
    )
    return row


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def aggregate(rows: list[dict[str, Any]], kind: Kind, *, judged: bool = False) -> dict[str, Any]:
    """One benchmark's summary from its `record_metrics` rows."""
    n = len(rows)
    out: dict[str, Any] = {"kind": kind, "n": n}

    def col(key: str) -> list[float]:
        return [float(r[key]) for r in rows if key in r]

    if kind == "qa":
        out["em"] = _mean(col("em"))
        out["f1"] = _mean(col("f1"))
        if judged:
            out["judge"] = _mean(col("judge"))
        out["score"] = out["judge"] if judged else out["em"]
    else:
        out["accuracy"] = _mean(col("correct"))
        out["score"] = out["accuracy"]
    steps = sum(col("steps"))
    calls = sum(col("tool_calls"))
    out.update(
        answered=_mean(col("answered")),
        steps_per_question=_mean(col("steps")),
        tool_calls_per_question=_mean(col("tool_calls")),
        searches_per_question=_mean(col("searches")),
        parse_error_rate=sum(col("parse_errors")) / steps if steps else 0.0,
        exec_error_rate=sum(col("exec_errors")) / calls if calls else 0.0,
        fallback_rate=_mean(col("fallback")),
        prompt_tokens_per_question=_mean(col("prompt_tokens")),
        completion_tokens_per_question=_mean(col("completion_tokens")),
        seconds_per_question=_mean(col("seconds")),
    )
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


AVERAGED = ("score", "em", "f1", "judge", "accuracy", "answered", "steps_per_question",
            "tool_calls_per_question", "searches_per_question", "parse_error_rate",
            "exec_error_rate", "fallback_rate", "prompt_tokens_per_question",
            "completion_tokens_per_question", "seconds_per_question")


def average(per_bench: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Macro mean over benchmarks of every metric some benchmark has."""
    out: dict[str, Any] = {"benchmarks": len(per_bench),
                           "n": sum(int(b.get("n", 0)) for b in per_bench.values())}
    for key in AVERAGED:
        values = [float(b[key]) for b in per_bench.values() if key in b]
        if values:
            out[key] = round(_mean(values), 4)
    return out
