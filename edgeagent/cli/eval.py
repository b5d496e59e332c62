"""`edgeagent eval` (run benchmarks) and `edgeagent eval compare DIR…` (table + chart).

    edgeagent eval --bench gsm8k,hotpotqa --limit 10 --mode agent --votes 4 --out runs/a
    edgeagent eval compare runs/a runs/b --png runs/compare.png

Benchmarks are short names or files in the same format. A short name's file
comes from `--data-dir DIR` (or `$EDGEAGENT_DATA`; offline, nothing is
downloaded), else the user's data dir, else a one-time, checksum-checked
download from the Hub (`edgeagent.eval.datafiles`). In agent mode the
`web_search` tool uses `--wiki NAME`, by default the `multihop` index, built
once from `wiki/multihop_paragraphs.jsonl.gz` found the same way.
`--workers K` runs K questions at once, each worker with its own model copy
and `cores / K - 1` llama.cpp threads (at least 1); the default is 1 worker,
right for 2 cores. (One core is left free because llama.cpp's threads
spin-wait: on a busy 2-core machine 2 threads generated 11 tok/s, 1 thread 65.)
Heavy imports happen in the handlers.

Not covered: the harness itself (`edgeagent.eval`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from edgeagent.cli.options import add_straggler

MULTIHOP = "multihop"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on the paper's benchmarks; `eval compare` for a table",
        description="Run benchmarks (agent, CoT or direct answers), write one trajectory per "
        "question and summary.json to --out; an interrupted run resumes where it stopped.",
    )
    p.add_argument("--bench", metavar="LIST",
                   help="comma-separated: hotpotqa, musique, 2wiki, math500, gsm-hard, gsm8k, "
                   "aime, olymmath, or paths to files in that format")
    p.add_argument("--out", metavar="DIR", help="output folder (resumed if it exists)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="first N questions of each benchmark")
    p.add_argument("--model", default=None, help="model name from the registry, or a GGUF path")
    p.add_argument("--mode", choices=("agent", "cot", "direct"), default="agent",
                   help="agent (code + search, default), cot (the paper's CoT prompt), "
                   "direct (answer only)")
    p.add_argument("--votes", type=int, default=1, metavar="N",
                   help="agent: N candidate actions per step (paper: 8); cot/direct: "
                   "majority vote over N answers")
    add_straggler(p)
    p.add_argument("--wiki", default=None, metavar="NAME",
                   help=f"wiki index for web_search (default: {MULTIHOP}, built on first use)")
    p.add_argument("--no-wiki", action="store_true", help="agent without web_search")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="questions in parallel, one model each (default 1)")
    p.add_argument("--judge", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint of an LLM judge for factual QA")
    p.add_argument("--judge-model", default=None, help="model name to ask the judge endpoint for")
    # its own dest: the top-level `edgeagent --data-dir` (config/data/cache home) is another
    p.add_argument("--data-dir", "--data-root", dest="bench_data", default=None, metavar="DIR",
                   help="folder with the paper's data files (benchmarks/…, wiki/…); offline, "
                   "nothing downloaded (default: $EDGEAGENT_DATA, else the data dir, "
                   "else a download from the Hub)")
    p.add_argument("--temperature", type=float, default=None,
                   help="default: 0 with 1 vote, 0.4 with more")
    p.add_argument("--top-p", type=float, default=None, help="default: 1.0 / 0.8 with votes")
    p.add_argument("--max-steps", type=int, default=5, metavar="K", help="agent steps (default 5)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="tokens per generation (default: agent 512, cot 1024, direct 64)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")
    p.add_argument("--prompt", choices=("student", "teacher"), default="student",
                   help="agent system prompt (default: student)")
    p.add_argument("--n-ctx", type=int, default=8192, help="context size (default 8192)")
    p.add_argument("--threads", type=int, default=None,
                   help="llama.cpp threads per worker (default: cores / workers - 1, at least 1)")
    p.add_argument("--lora", default=None, metavar="FILE",
                   help="LoRA adapter GGUF to apply to --model (from `edgeagent convert lora`)")
    p.add_argument("--lora-scale", type=float, default=None, metavar="X",
                   help="LoRA strength (default 1.0)")
    p.set_defaults(handler=handle)

    csub = p.add_subparsers(dest="eval_command", metavar="compare")
    c = csub.add_parser("compare", help="compare eval runs: a table and a PNG bar chart",
                        description="Read summary.json of each folder and show them side by "
                        "side, like the paper's Table 2.")
    c.add_argument("dirs", nargs="+", metavar="DIR", help="eval output folders")
    c.add_argument("--metric", default="score",
                   help="score (default), em, f1, judge, accuracy, steps_per_question, "
                   "seconds_per_question, …")
    c.add_argument("--png", default="eval-compare.png", metavar="PATH",
                   help="bar chart file (default: eval-compare.png)")
    c.add_argument("--no-chart", action="store_true", help="table only")
    c.add_argument("--markdown", action="store_true",
                   help="print the table as GitHub markdown (for notes and issues)")
    c.set_defaults(handler=handle_compare)


def _check(args: argparse.Namespace) -> None:
    from edgeagent.errors import UserError

    if not args.bench:
        raise UserError("--bench is required (e.g. --bench gsm8k,hotpotqa)")
    if not args.out:
        raise UserError("--out DIR is required")
    if args.votes < 1:
        raise UserError("--votes must be at least 1")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    if args.lora_scale is not None and args.lora is None:
        raise UserError("--lora-scale needs --lora FILE")
    if args.lora is not None and not Path(args.lora).is_file():
        raise UserError(f"LoRA adapter not found: {args.lora}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")


def _ensure_wiki(name: str, data: Path | None) -> None:
    """Open-able index `name`; builds the default `multihop` one from shared data once."""
    from edgeagent.wiki import store

    if store.read_meta(name) is not None or name != MULTIHOP:
        return
    from edgeagent.eval.datafiles import locate
    from edgeagent.wiki.build import build_from_file

    src = locate("wiki/multihop_paragraphs.jsonl.gz", data)
    print(f"building wiki index {MULTIHOP!r} from {src.name} (once)…", file=sys.stderr)
    build_from_file(MULTIHOP, src, split=False, attribution="HotpotQA/MuSiQue/2Wiki paragraphs",
                    license="CC BY-SA")


def handle(args: argparse.Namespace) -> int:
    from edgeagent.errors import UserError

    _check(args)
    from edgeagent.eval.data import data_root, load_benchmark, parse_specs
    from edgeagent.eval.runner import EvalConfig, run_eval
    from edgeagent.models.registry import resolve_model

    data = data_root(args.bench_data)
    specs = parse_specs(args.bench)
    benches = [load_benchmark(s, data) for s in specs]
    names = [b.name for b in benches]
    if len(set(names)) < len(names):
        raise UserError("two benchmarks share a name: " + ", ".join(names))
    path = resolve_model(args.model)
    wiki = None
    if args.mode == "agent" and not args.no_wiki:
        wiki = args.wiki or MULTIHOP
        _ensure_wiki(wiki, data)
        from edgeagent.wiki.index import WikiIndex

        WikiIndex.open(wiki)  # a clear error now, not in a worker
    config = EvalConfig(
        mode=args.mode, votes=args.votes, temperature=args.temperature, top_p=args.top_p,
        max_steps=args.max_steps, max_tokens=args.max_tokens, seed=args.seed,
        prompt=args.prompt, model=path.name, wiki=wiki, judge=args.judge,
        lora=Path(args.lora).name if args.lora else None,
        lora_scale=(1.0 if args.lora_scale is None else args.lora_scale) if args.lora else None,
        straggler=args.straggler,
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # one core is left free: llama.cpp's threads spin-wait, and on a shared or
    # oversubscribed CPU two threads ran 6x slower than one here (2 cores)
    threads = args.threads or max(1, (cores or 1) // args.workers - 1)
    n_ctx = args.n_ctx
    votes = args.votes
    lora = args.lora
    lora_scale = 1.0 if config.lora_scale is None else config.lora_scale

    def make_engine() -> Any:
        from edgeagent.engines.llamacpp import LlamaCppEngine

        return LlamaCppEngine(path, n_ctx=n_ctx, n_threads=threads, max_parallel=max(1, votes),
                              lora=lora, lora_scale=lora_scale)

    def make_search() -> Any:
        if wiki is None:
            return None
        from edgeagent.wiki.index import WikiIndex

        return WikiIndex.open(wiki).search

    judge = None
    if args.judge:
        from edgeagent.scoring.judge import LLMJudge

        judge = LLMJudge.from_url(args.judge, model=args.judge_model)
    try:
        summary = run_eval(benches, Path(args.out), config, make_engine=make_engine,
                           make_search=make_search, judge=judge, limit=args.limit,
                           workers=args.workers)
    finally:
        if judge is not None:
            judge.close()
    _print_summary(summary, Path(args.out))
    return 0


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{out} — {summary['run']['mode']}, votes {summary['run']['votes']}")
    for col in ("bench", "n", "score%", "EM%", "F1%", "steps", "tools", "parse%", "exec%",
                "tok in", "tok out", "s/q"):
        t.add_column(col, justify="left" if col == "bench" else "right")

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * float(v):.1f}"

    items = [*summary["benchmarks"].items(), ("average", summary["average"])]
    for name, b in items:
        t.add_row(name, f"{b.get('n')}" + (f"/{b['total']}" if "total" in b else ""),
                  pct(b.get("score")), pct(b.get("em")), pct(b.get("f1")),
                  f"{b.get('steps_per_question', 0):.2f}",
                  f"{b.get('tool_calls_per_question', 0):.2f}", pct(b.get("parse_error_rate")),
                  pct(b.get("exec_error_rate")), f"{b.get('prompt_tokens_per_question', 0):.0f}",
                  f"{b.get('completion_tokens_per_question', 0):.0f}",
                  f"{b.get('seconds_per_question', 0):.1f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(t)
    if not summary.get("complete"):
        print("edgeagent: the run is incomplete; run the same command again to resume",
              file=sys.stderr)


def handle_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgeagent.eval.compare import chart, load_runs, markdown, table

    runs = load_runs(args.dirs)
    if args.markdown:
        sys.stdout.write(markdown(runs, args.metric))
    else:
        Console().print(table(runs, args.metric))
    if not args.no_chart:
        png = chart(runs, Path(args.png), args.metric)
        print(f"chart: {png}", file=sys.stderr)
    return 0
