"""`edgeagent bench engine|sag|ask|wiki|sandbox|serve`: measured ratios, printed as JSON or a table.

Each benchmark lives in `edgeagent.bench.<name>` (`add_arguments(parser)`,
`run(args) -> dict`); its top-level imports stay light (`--help` imports it).
Whatever a bench returns is printed in the one shape of `edgeagent.bench.report`
(`name`, `model`, `baseline`, `ratio`, then the figures). `--model` is offered by
the benches that load a model, and each of them measures that model.

Not covered: the measurements themselves (the bench modules).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHES: dict[str, str] = {
    "engine": "local engine vs raw llama-cpp-python; batched vs single sampling; prefix reuse",
    "sag": "one agent step: self-consistent action generation (8 votes) vs greedy",
    "ask": "the whole agent on real questions: time per question, 8 votes vs 1, accuracy",
    "wiki": "wiki index build rate, search latency and recall",
    "sandbox": "code tool latency and candidate fan-out vs a subprocess per call",
    "serve": "the OpenAI server: requests per minute and p50 latency, N clients vs 1",
}
MODEL_BENCHES = frozenset({"engine", "sag", "ask", "serve"})


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="measure speed against a baseline in the same run")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for name, help_text in BENCHES.items():
        module = importlib.import_module(f"edgeagent.bench.{name}")
        p = bench_sub.add_parser(name, help=help_text, description=help_text)
        if name in MODEL_BENCHES:
            p.add_argument("--model",
                           help="model name or GGUF path (default: the default model)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(p)
        p.set_defaults(handler=_make_handler(name, module))


def _make_handler(name: str, module: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        from edgeagent.bench.report import print_report, shape

        print_report(shape(name, module.run(args)), as_json=args.json)
        return 0

    return handler
