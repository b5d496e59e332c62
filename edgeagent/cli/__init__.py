"""The `edgeagent` command line.

Each command group lives in its own module under `edgeagent.cli` and exposes
`register(subparsers)`, which adds its parser and sets `handler` on it. Those
modules keep their top-level imports light (no llama_cpp, no tantivy, never
torch): `edgeagent --help` imports all of them. The heavy work is imported
inside the handlers.

A `UserError` becomes one line on stderr and a non-zero exit; Ctrl+C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeagent import __version__
from edgeagent.cli import ask, bench, convert, distill, doctor, models, serve, wiki
from edgeagent.cli import eval as evaluate
from edgeagent.errors import UserError

# Command groups, in the order `--help` lists them.
COMMAND_MODULES = (ask, serve, wiki, models, evaluate, bench, distill, convert, doctor)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"edgeagent: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgeagent",
        description="A local agent that searches Wikipedia and runs Python. "
        "With no command it opens the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    parser.add_argument("--model", dest="global_model", metavar="MODEL",
                        help="model name from the registry, or a path to a GGUF file")
    parser.add_argument("--wiki", dest="global_wiki", metavar="NAME", help="wiki index name")
    parser.add_argument("--data-dir", help="use this directory for config, data and cache")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _run_tui(args: argparse.Namespace) -> int:
    from edgeagent.tui.app import run_app

    return run_app(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # `edgeagent --model M ask …` and `edgeagent ask --model M …` mean the same
    if getattr(args, "model", None) is None:
        args.model = args.global_model
    if getattr(args, "wiki", None) is None:
        args.wiki = args.global_wiki
    if getattr(args, "data_dir", None):
        import os

        os.environ["EDGEAGENT_HOME"] = args.data_dir
    try:
        handler = getattr(args, "handler", None)
        if handler is None:
            if args.command is not None:
                # a group without a subcommand: show its help
                parser.parse_args([args.command, "--help"])
                return 2
            return _run_tui(args)
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"edgeagent: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeagent: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
