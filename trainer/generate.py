"""`distill generate`: one greedy teacher trajectory per benchmark question, resumable.

    cfg = GenerateConfig(teacher="http://gpu:8000", data=Path("hotpotqa_1000.json"),
                         out=Path("traj.jsonl"), ftp=True, workers=8)
    report = generate(cfg, search=WikiIndex.open("wiki18").search)

Teachers: an OpenAI-compatible URL (`OpenAIEngine`; `workers` threads, each
with its own engine and `Agent`, so requests run in parallel), a GGUF file
(`LlamaCppEngine`, one worker), or `gold` (GSM8K calculator annotations,
`trainer.gold`, no model). The agent is the app's loop with the long teacher
prompt, one vote, greedy; with `ftp` each question first gets a first-thought
prefix (`trainer.ftp`) that the teacher continues in step 1. The loop's
answer-from-memory call after the last step is off unless `fallback` is set:
`distill filter` drops such trajectories anyway, so it would cost teacher
time for nothing but a statistic.

Data: a benchmark `.json` (`{metadata, examples: [{id, question, answer}]}`)
or JSON Lines (GSM8K: `{question, answer ending in "#### N"}`); ids are the
examples' `id`, else `<file stem>:<line index>` (as `distill gold`). The gold
answer is recorded (GSM8K: the number after `####`), and the dataset name
(the file stem without sizes and split names, e.g. `gsm8k`) decides math vs
QA scoring in `distill filter`.

Output: whole records appended one by one (`append_record`, fsync), ids
already in the file skipped, so a killed run resumes where it stopped. A
record whose engine call failed for good (a 4xx, context full) is written
with its `error` (filter drops it; a resume does not retry it); a teacher
that stops answering (connection refused, timeouts, 5xx after the engine's
retries) stops the run with a `UserError`: what was finished stays, the rest
is not written, and a rerun continues. Cancelled runs (Ctrl+C) write nothing
half-done.

Not covered: sampling several trajectories per question, voting teachers.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.agent.trajectory import Trajectory, append_record, done_ids
from edgeagent.engines.base import Completion, Engine, Message, TokenCallback
from edgeagent.errors import UserError
from edgeagent.eval.data import read_examples

if TYPE_CHECKING:
    from edgeagent.agent.loop import Agent, SearchFn

UNREACHABLE = 3  # UserError.exit_code of an engine that gave up after its retries
_SPLITS = ("train", "test", "dev", "val", "validation")


# -- the data ------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One question to solve."""

    id: str
    question: str
    gold: Any
    dataset: str
    example: dict[str, Any]


def dataset_name(path: Path) -> str:
    """`gsm8k_train_7473.jsonl` -> `gsm8k`, `hotpotqa_500.json` -> `hotpotqa`."""
    name = path.name.split(".")[0].lower()
    name = re.sub(r"_\d+$", "", name)
    for split in _SPLITS:
        name = re.sub(rf"_{split}$", "", name)
    return name or "data"


def _gold(answer: Any) -> Any:
    if isinstance(answer, str) and "####" in answer:
        from edgeagent.scoring.extract import gsm8k_gold

        return gsm8k_gold(answer) or answer
    return answer


def load_tasks(path: Path, *, limit: int | None = None, dataset: str | None = None) -> list[Task]:
    """The questions of a benchmark file, in file order (a `UserError` if there are none)."""
    examples = read_examples(path)
    if limit is not None:
        examples = examples[:limit]
    stem = path.name.split(".")[0]
    name = dataset or dataset_name(path)
    tasks: list[Task] = []
    seen: set[str] = set()
    for n, ex in enumerate(examples):
        if not isinstance(ex, dict) or not str(ex.get("question") or "").strip():
            raise UserError(f"{path}: example {n + 1} has no question")
        tid = str(ex["id"]) if ex.get("id") not in (None, "") else f"{stem}:{n}"
        if tid in seen:
            tid = f"{tid}#{n}"
        seen.add(tid)
        tasks.append(Task(tid, str(ex["question"]).strip(), _gold(ex.get("answer")), name, ex))
    if not tasks:
        raise UserError(f"{path} holds no examples")
    return tasks


# -- the teacher ---------------------------------------------------------------


@dataclass
class GenerateConfig:
    """What `distill generate` was asked for (see the CLI for each option)."""

    teacher: str
    data: Path
    out: Path
    ftp: bool = False
    workers: int = 1
    limit: int | None = None
    model_name: str | None = None
    chat_template: str | None = None
    dataset: str | None = None
    max_steps: int = 5
    max_tokens: int = 1024
    cot_max_tokens: int = 1024
    retries: int = 4
    n_ctx: int = 8192
    code_timeout_s: float = 10.0
    fallback: bool = False


@dataclass
class GenerateReport:
    total: int = 0
    already_done: int = 0
    written: int = 0
    answered: int = 0
    engine_errors: int = 0
    with_prefix: int = 0
    skipped: list[str] = field(default_factory=list)  # gold: "<id>: <reason>"
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"wrote {self.written} trajectories ({self.answered} with an answer) in "
               f"{self.seconds:.1f} s; {self.already_done} of {self.total} were already done"]
        if self.with_prefix:
            out.append(f"  {self.with_prefix} started from a first-thought prefix")
        if self.engine_errors:
            out.append(f"  {self.engine_errors} ended in a teacher error (kept with `error`; "
                       "`distill filter` drops them)")
        if self.skipped:
            out.append(f"  skipped {len(self.skipped)} without usable annotations, e.g. "
                       f"{self.skipped[0]}")
        return out


def teacher_kind(teacher: str) -> str:
    """"url", "gguf" or "gold" (a `UserError` for anything else)."""
    if teacher == "gold":
        return "gold"
    if teacher.startswith(("http://", "https://")):
        return "url"
    path = Path(teacher).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file():
        if not path.is_file():
            raise UserError(f"no such GGUF file: {teacher}")
        return "gguf"
    raise UserError(f"--teacher must be an http(s) URL, a .gguf file or `gold`: {teacher}")


def read_chat_template(source: str) -> str:
    """A Jinja chat template from a GGUF header, a `tokenizer_config.json`, or a text file."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"no such chat template file: {source}")
    if path.suffix.lower() == ".gguf":
        from edgeagent.engines.chat_template import template_from_gguf

        template = template_from_gguf(str(path))
        if not template:
            raise UserError(f"{path} stores no chat template")
        return template
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read chat template {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text).get("chat_template")
        except (json.JSONDecodeError, AttributeError):
            value = None
        if not isinstance(value, str) or not value:
            raise UserError(f"{path} has no `chat_template` string")
        return value
    return text


def server_chat_template(url: str) -> str | None:
    """The template a llama.cpp server reports at `/props` (None for other servers)."""
    import httpx

    base = url.rstrip("/")
    base = base[: -len("/v1")] if base.endswith("/v1") else base
    try:
        resp = httpx.get(f"{base}/props", timeout=5.0)
        value = resp.json().get("chat_template") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class _Watched:
    """The teacher engine, remembering whether it gave up on the server (exit code 3)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.down: UserError | None = None

    def generate(self, messages: Sequence[Message] | str, **kwargs: Any) -> list[Completion]:
        on_token: TokenCallback | None = kwargs.pop("on_token", None)
        del on_token  # nobody watches the tokens; without it HTTP engines need no stream
        try:
            return self.engine.generate(messages, **kwargs)
        except UserError as exc:
            if exc.exit_code == UNREACHABLE:
                self.down = exc
            raise

    def cancel(self) -> None:
        stop = getattr(self.engine, "cancel", None)
        if callable(stop):
            stop()

    def close(self) -> None:
        self.engine.close()


# -- the run -------------------------------------------------------------------


def _progress(total: int) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[answered]} answered"), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console,
        disable=not console.is_terminal,
    )


def generate(
    cfg: GenerateConfig,
    *,
    search: SearchFn | None = None,
    open_search: Callable[[], SearchFn | None] | None = None,
    engine_factory: Callable[[], Engine] | None = None,
) -> GenerateReport:
    """Append one trajectory per not-yet-done question of `cfg.data` to `cfg.out`.

    `open_search` (instead of `search`) opens the wiki index only once the
    teacher has answered, so a dead teacher fails fast; `engine_factory`
    replaces the engine that `cfg.teacher` names (tests)."""
    kind = teacher_kind(cfg.teacher)
    if cfg.max_steps < 1 or cfg.max_tokens < 1 or cfg.cot_max_tokens < 1:
        raise UserError("--max-steps, --max-tokens and --cot-max-tokens must be at least 1")
    if cfg.retries < 0:
        raise UserError("--retries must be 0 or more")
    if kind == "gold" and cfg.ftp:
        raise UserError("--ftp needs an LLM teacher, not `gold`")
    if cfg.workers < 1:
        raise UserError("--workers must be at least 1")
    if cfg.limit is not None and cfg.limit < 1:
        raise UserError("--limit must be at least 1")
    tasks = load_tasks(cfg.data, limit=cfg.limit, dataset=cfg.dataset)
    done = done_ids(cfg.out)
    pending = [t for t in tasks if t.id not in done]
    report = GenerateReport(total=len(tasks), already_done=len(tasks) - len(pending))
    if not pending:
        return report
    started = time.perf_counter()
    try:
        if kind == "gold":
            _run_gold(cfg, pending, report)
        else:
            _run_teacher(cfg, kind, pending, report, search, open_search, engine_factory)
    finally:
        report.seconds = time.perf_counter() - started
    return report


def _count(report: GenerateReport, traj: Trajectory) -> None:
    report.written += 1
    report.answered += traj.answer is not None
    report.engine_errors += traj.error is not None
    report.with_prefix += traj.ftp_prefix is not None


def _run_gold(cfg: GenerateConfig, pending: list[Task], report: GenerateReport) -> None:
    from trainer.gold import GoldError, gold_trajectory

    with _progress(len(pending)) as bar:
        job = bar.add_task("gold", total=len(pending), answered=0)
        for task in pending:
            try:
                traj = gold_trajectory(task.example, task_id=task.id, dataset=task.dataset)
            except GoldError as exc:
                report.skipped.append(f"{task.id}: {exc}")
            else:
                append_record(cfg.out, traj)
                _count(report, traj)
            bar.update(job, advance=1, answered=report.answered)
    if report.written == 0:
        raise UserError(f"no gold trajectories from {cfg.data} (first problem: "
                        f"{report.skipped[0]}); `--teacher gold` needs GSM8K-style "
                        "<<a*b=c>> annotations")


def _make_factory(cfg: GenerateConfig, kind: str) -> tuple[Callable[[], Engine], int]:
    """An engine maker and how many workers it allows."""
    if kind == "gguf":
        from edgeagent.engines.llamacpp import LlamaCppEngine

        if cfg.workers > 1:
            print("edgeagent: a GGUF teacher runs one question at a time; --workers ignored",
                  file=sys.stderr)
        return (lambda: LlamaCppEngine(Path(cfg.teacher).expanduser(), n_ctx=cfg.n_ctx,
                                       max_parallel=1)), 1
    from edgeagent.engines.openai_http import OpenAIEngine

    template = read_chat_template(cfg.chat_template) if cfg.chat_template else None
    if cfg.ftp and template is None:
        template = server_chat_template(cfg.teacher)
        if template is None:
            print("edgeagent: --ftp without --chat-template: the prefix goes out as a trailing "
                  "assistant message with continue_final_message (vLLM); for llama.cpp or "
                  "llama-cpp-python servers pass --chat-template MODEL.gguf", file=sys.stderr)
    return (lambda: OpenAIEngine(cfg.teacher, model=cfg.model_name, chat_template=template,
                                 retries=cfg.retries)), cfg.workers


def _preflight(engine: Engine, teacher: str) -> str:
    """One tiny request, so a dead or misconfigured teacher fails before any record."""
    try:
        engine.generate([{"role": "user", "content": "Say OK."}], max_tokens=1)
    except UserError as exc:
        raise UserError(f"teacher {teacher} is not usable: {exc}", exit_code=exc.exit_code
                        ) from None
    return str(getattr(engine, "model", None) or engine.name)


_STOP = object()


def _run_teacher(
    cfg: GenerateConfig,
    kind: str,
    pending: list[Task],
    report: GenerateReport,
    search: SearchFn | None,
    open_search: Callable[[], SearchFn | None] | None,
    engine_factory: Callable[[], Engine] | None,
) -> None:
    from edgeagent.agent.loop import Agent, AgentConfig
    from trainer.ftp import first_thought_prefix, load_cot_prompt

    if engine_factory is not None:
        factory, workers = engine_factory, cfg.workers
    else:
        factory, workers = _make_factory(cfg, kind)
    workers = max(1, min(workers, len(pending)))
    first = factory()
    engines: list[Engine] = [first]
    try:
        served = _preflight(first, cfg.teacher)
        if kind == "gguf":
            served = Path(cfg.teacher).name
        model_name = cfg.model_name or served
        if search is None and open_search is not None:
            search = open_search()
        config = AgentConfig(votes=1, prompt="teacher", max_steps=cfg.max_steps,
                             max_tokens=cfg.max_tokens, code_timeout_s=cfg.code_timeout_s,
                             fallback=cfg.fallback)
        cot = load_cot_prompt() if cfg.ftp else None
        todo: queue.Queue[Task] = queue.Queue()
        for task in pending:
            todo.put(task)
        results: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        agents: list[Agent] = []
        lock = threading.Lock()

        def work(engine: Engine) -> None:
            watched = _Watched(engine)
            agent = Agent(watched, search=search, config=config, model_name=model_name)
            with lock:
                agents.append(agent)
            try:
                while not stop.is_set():
                    try:
                        task = todo.get_nowait()
                    except queue.Empty:
                        return
                    prefix = None
                    if cot is not None:
                        try:
                            prefix = first_thought_prefix(watched, task.question, prompt=cot,
                                                          max_tokens=cfg.cot_max_tokens)
                        except UserError as exc:
                            if watched.down is None:
                                watched.down = exc
                        if stop.is_set():
                            return
                    traj = None
                    if watched.down is None:
                        traj = agent.run(task.question, task_id=task.id, gold=task.gold,
                                         dataset=task.dataset, prefix=prefix)
                        traj.engine = type(engine).__name__
                    if watched.down is not None or traj is None:
                        results.put(watched.down)
                        return
                    results.put(traj)
            except BaseException as exc:  # a bug: hand it to the main thread
                results.put(exc)
            finally:
                results.put(_STOP)

        for _ in range(workers - 1):
            engines.append(factory())
        threads = [threading.Thread(target=work, args=(e,), daemon=True, name=f"teacher-{i}")
                   for i, e in enumerate(engines)]
        failure: BaseException | None = None
        with _progress(len(pending)) as bar:
            job = bar.add_task("teacher", total=len(pending), answered=0)
            for t in threads:
                t.start()
            running = len(threads)
            try:
                while running:
                    item = results.get()
                    if item is _STOP:
                        running -= 1
                    elif isinstance(item, BaseException):
                        failure = failure or item
                        stop.set()
                    elif isinstance(item, Trajectory) and not item.cancelled:
                        append_record(cfg.out, item)
                        _count(report, item)
                        bar.update(job, advance=1, answered=report.answered)
            except KeyboardInterrupt:
                stop.set()
                for agent in list(agents):
                    agent.cancel()
                for t in threads:  # let cancelled runs unwind before engines close
                    t.join(timeout=10)
                raise
        if isinstance(failure, UserError):
            left = len(pending) - report.written
            raise UserError(f"teacher stopped answering: {failure}; kept {report.written} "
                            f"finished trajectories in {cfg.out}, {left} left - rerun to "
                            "resume", exit_code=failure.exit_code)
        if failure is not None:
            raise failure
    finally:
        for engine in engines:
            engine.close()
