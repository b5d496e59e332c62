"""`edgeagent doctor`: check this install and say how to fix each problem.

Prints one line per check (`--json` for bug reports) and exits 1 when something
required is broken. The checks themselves live in `edgeagent.doctor`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_MARK = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "info": ("·", "dim")}


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check this install (versions, CPU, model, wiki, sandbox)",
                       description="Check this install and say how to fix each problem. "
                       "Exits 1 when something required is broken.")
    p.add_argument("--model", help="check this model instead of the one the app would load")
    p.add_argument("--quick", action="store_true", help="do not load and time the model")
    p.add_argument("--json", action="store_true", help="print one JSON object (for bug reports)")
    p.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from edgeagent.doctor import as_json, run_checks

    checks = run_checks(args.model, quick=args.quick)
    report = as_json(checks)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark, colour = _MARK[c.status]
            console.print(f"[{colour}]{mark}[/] {c.name.ljust(width)}  {escape(c.detail)}")
            if c.fix and c.status in ("warn", "fail"):
                console.print(f"  {' ' * width}  [bold]fix:[/] {escape(c.fix)}")
        problems = sum(c.status == "fail" for c in checks)
        console.print("no problems found" if not problems
                      else f"{problems} problem{'s' * (problems > 1)} found")
    return 0 if report["ok"] else 1
