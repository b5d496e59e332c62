"""`edgeagent bench engine|sag|wiki|sandbox`: measured ratios, printed as JSON or a table.

Each benchmark lives in `edgeagent.bench.<name>` (`add_arguments(parser)`,
`run(args) -> dict`); its top-level imports stay light (`--help` imports it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

BENCHES: dict[str, str] = {
    "engine": "local engine vs raw llama-cpp-python; batched vs single sampling; prefix reuse",
    "sag": "one agent step: self-consistent action generation (8 votes) vs greedy",
    "wiki": "wiki index build rate, search latency and recall",
    "sandbox": "code tool latency and candidate fan-out vs a subprocess per call",
    "serve": "the OpenAI server: requests per minute and p50 latency, N clients vs 1",
}


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="measure speed against a baseline in the same run")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    for name, help_text in BENCHES.items():
        module = importlib.import_module(f"edgeagent.bench.{name}")
        p = bench_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--model", help="model name or GGUF path (default: the default model)")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(p)
        p.set_defaults(handler=_make_handler(module))


def _make_handler(module: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        result: dict[str, Any] = module.run(args)
        if args.json:
            json.dump(result, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            from rich.console import Console
            from rich.table import Table

            table = Table(show_header=True, header_style="bold")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for key, value in result.items():
                table.add_row(key, str(value))
            Console().print(table)
        return 0

    return handler
