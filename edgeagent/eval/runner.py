"""Run benchmarks through a solver, resumably, in parallel; write trajectories and a summary.

    summary = run_eval([load_benchmark("gsm8k")], Path("runs/a"), EvalConfig(mode="cot"),
                       make_engine=lambda: LlamaCppEngine(path), limit=10)

Files in the output folder:

- `run.json`: the settings that make two runs comparable (mode, votes,
  sampling, model, wiki, judge, …). A resumed run must match them, else a
  one-line `UserError` (use another folder).
- `<benchmark>.jsonl`: one trajectory per question, the shared schema
  (`edgeagent.agent.trajectory`), `score` = 1.0/0.0 by the headline metric
  (the judge's verdict when judged). Whole records are appended as questions
  finish (`append_record`), so a killed run loses at most the questions in
  flight; a rerun skips `done_ids` and never writes an id twice.
- `summary.json`: `{run, benchmarks: {name: metrics}, average, complete}`
  (metrics: `edgeagent.eval.metrics`), rewritten after every benchmark and
  when a run is interrupted, so a partial run can be compared.

Workers are threads, each with its own engine (`make_engine`), search
function and solver (an `Agent` or a `CotRunner`); llama.cpp and the sandbox
run outside the GIL. The main thread alone appends to files. Ctrl+C cancels
the solvers in flight and re-raises.

Not covered: the command line (`edgeagent.cli.eval`), comparing runs (`compare`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edgeagent.agent.trajectory import append_record, done_ids, read_records
from edgeagent.errors import UserError
from edgeagent.eval.data import Benchmark, Example
from edgeagent.eval.metrics import aggregate, average, record_metrics

if TYPE_CHECKING:
    from rich.console import Console

    from edgeagent.agent.loop import SearchFn
    from edgeagent.agent.trajectory import Trajectory
    from edgeagent.engines.base import Engine
    from edgeagent.scoring.judge import LLMJudge

EvalMode = Literal["agent", "cot", "direct"]
DEFAULT_MAX_TOKENS = {"agent": 512, "cot": 1024, "direct": 64}
# settings that must match when a run is resumed
IDENTITY = ("mode", "votes", "temperature", "top_p", "max_steps", "max_tokens", "seed",
            "prompt", "model", "wiki", "judge", "lora", "lora_scale", "straggler")
LATER_KEYS = ("straggler",)  # absent from run.json files written before they existed


@dataclass
class EvalConfig:
    """How each question is solved; `max_tokens` None: the mode's default."""

    mode: EvalMode = "agent"
    votes: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_steps: int = 5
    max_tokens: int | None = None
    seed: int | None = 42
    prompt: Literal["student", "teacher"] = "student"
    model: str = "model"
    wiki: str | None = None
    judge: str | None = None
    lora: str | None = None  # adapter GGUF file name; None: the model alone
    lora_scale: float | None = None  # None without an adapter
    straggler: Literal["quorum", "wait"] = "quorum"  # agent votes > 1 only

    def tokens(self) -> int:
        return self.max_tokens or DEFAULT_MAX_TOKENS[self.mode]

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_tokens"] = self.tokens()
        if self.mode != "agent" or self.votes < 2:
            d["straggler"] = None  # no effect: not part of what the run is
        return {k: d[k] for k in IDENTITY}


class Solver(Protocol):
    def run(self, question: str, *, task_id: str | None = None, gold: Any = None,
            dataset: str | None = None) -> Trajectory: ...


def make_solver(engine: Engine, search: SearchFn | None, config: EvalConfig) -> Solver:
    """An `Agent` (mode agent) or a `CotRunner` (cot, direct) for one worker."""
    if config.mode == "agent":
        from edgeagent.agent.loop import Agent, AgentConfig

        return Agent(engine, search=search, model_name=config.model, config=AgentConfig(
            votes=config.votes, temperature=config.temperature, top_p=config.top_p,
            max_steps=config.max_steps, max_tokens=config.tokens(), seed=config.seed,
            prompt=config.prompt, straggler=config.straggler))
    from edgeagent.eval.cot import CotRunner

    return CotRunner(engine, mode=config.mode, votes=config.votes,
                     temperature=config.temperature, top_p=config.top_p,
                     max_tokens=config.tokens(), seed=config.seed, model_name=config.model)


def check_run_file(out: Path, config: EvalConfig) -> None:
    """Write `run.json`, or check that the folder's earlier run used the same settings."""
    path = out / "run.json"
    new = config.identity()
    if path.exists():
        try:
            old = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{path} is unreadable ({exc}); use another --out") from None
        for key in IDENTITY:
            if key in LATER_KEYS and key not in old:
                continue
            if old.get(key) != new[key]:
                raise UserError(f"{out} holds a run with other settings ({key}: "
                                f"{old.get(key)!r} there, {new[key]!r} now); use another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    data = dict(new, created=datetime.now(UTC).isoformat(timespec="seconds"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    tmp.replace(path)


class _Workers:
    """Per-thread engine + solver, made on first use; all closed at the end."""

    def __init__(self, make_engine: Callable[[], Engine],
                 make_search: Callable[[], SearchFn | None] | None, config: EvalConfig) -> None:
        self.make_engine = make_engine
        self.make_search = make_search
        self.config = config
        self.local = threading.local()
        self.lock = threading.Lock()
        self.engines: list[Engine] = []
        self.solvers: list[Solver] = []

    def solver(self) -> Solver:
        solver: Solver | None = getattr(self.local, "solver", None)
        if solver is None:
            engine = self.make_engine()
            with self.lock:
                self.engines.append(engine)
            search = self.make_search() if self.make_search is not None else None
            solver = make_solver(engine, search, self.config)
            self.local.solver = solver
            with self.lock:
                self.solvers.append(solver)
        return solver

    def cancel(self) -> None:
        for s in list(self.solvers):
            cancel = getattr(s, "cancel", None)
            if callable(cancel):
                cancel()
        for e in list(self.engines):
            cancel = getattr(e, "cancel", None)
            if callable(cancel):
                cancel()

    def close(self) -> None:
        for e in self.engines:
            e.close()
        self.engines.clear()


def _solve(workers: _Workers, bench: Benchmark, ex: Example,
           judge: LLMJudge | None) -> Trajectory:
    from edgeagent.scoring import score_answer

    traj = workers.solver().run(ex.question, task_id=ex.id, gold=ex.gold, dataset=bench.name)
    use_judge = judge if bench.kind == "qa" else None
    s = score_answer(traj.answer, ex.gold, kind=bench.kind, dataset=bench.name,
                     question=ex.question, judge=use_judge)
    traj.score = float(s.correct)
    return traj


def summarize(benchmarks: list[Benchmark], out: Path, config: EvalConfig,
              limit: int | None = None) -> dict[str, Any]:
    """Recompute `summary.json` from the trajectory files (and write it)."""
    judged = config.judge is not None
    per: dict[str, dict[str, Any]] = {}
    complete = True
    for bench in benchmarks:
        targets = bench.examples[:limit] if limit else bench.examples
        wanted = {e.id for e in targets}
        path = out / f"{bench.name}.jsonl"
        records = read_records(path) if path.exists() else []
        rows = [record_metrics(r, bench.kind, judged=judged and bench.kind == "qa")
                for r in records if r.id in wanted]
        agg = aggregate(rows, bench.kind, judged=judged and bench.kind == "qa")
        agg["total"] = len(targets)
        agg["file"] = str(bench.path)
        per[bench.name] = agg
        complete = complete and agg["n"] == len(targets)
    summary = {"run": config.identity(), "benchmarks": per, "average": average(per),
               "complete": complete}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    tmp.replace(out / "summary.json")
    return summary


def run_eval(
    benchmarks: list[Benchmark],
    out: Path,
    config: EvalConfig,
    *,
    make_engine: Callable[[], Engine],
    make_search: Callable[[], SearchFn | None] | None = None,
    judge: LLMJudge | None = None,
    limit: int | None = None,
    workers: int = 1,
    console: Console | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Solve every not-yet-done question, appending trajectories; returns the summary."""
    from rich.console import Console

    from edgeagent.progress import progress_bar

    if workers < 1:
        raise UserError("--workers must be at least 1")
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1")
    check_run_file(out, config)
    console = console or Console(stderr=True)
    show = console.is_terminal if progress is None else progress
    pool_workers = _Workers(make_engine, make_search, config)
    bar = progress_bar("score {task.fields[score]}", console=console, show=show, eta=True)
    try:
        with bar, ThreadPoolExecutor(max_workers=workers,
                                     thread_name_prefix="eval") as pool:
            for bench in benchmarks:
                path = out / f"{bench.name}.jsonl"
                targets = bench.examples[:limit] if limit else bench.examples
                done = done_ids(path)
                pending = [e for e in targets if e.id not in done]
                wanted = {e.id for e in targets}
                scores = [r.score or 0.0 for r in (read_records(path) if done else [])
                          if r.id in wanted]
                task = bar.add_task(bench.name, total=len(targets), completed=len(scores),
                                    score=_fmt(scores))
                futures: set[Future[Trajectory]] = {
                    pool.submit(_solve, pool_workers, bench, ex, judge) for ex in pending}
                try:
                    while futures:
                        finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            traj = fut.result()
                            if traj.cancelled:
                                continue
                            append_record(path, traj)
                            scores.append(traj.score or 0.0)
                            bar.update(task, advance=1, score=_fmt(scores))
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    pool_workers.cancel()
                    summarize(benchmarks, out, config, limit)  # the partial run, comparable
                    raise
                summary = summarize(benchmarks, out, config, limit)
                if not show:
                    b = summary["benchmarks"][bench.name]
                    console.print(f"{bench.name}: {b['n']}/{b['total']} done, "
                                  f"score {b['score']:.3f}", highlight=False)
    finally:
        pool_workers.close()
    return summarize(benchmarks, out, config, limit)


def _fmt(scores: list[float]) -> str:
    return f"{sum(scores) / len(scores):.3f}" if scores else "-"
