"""The one JSON shape every `edgeagent bench …` prints, and its table form.

    {"name": "engine",                  # the bench
     "model": "SmolLM2-135M-Instruct",  # the model measured, null for benches without one
     "baseline": "raw llama-cpp-python, greedy, same prompt",   # what the ratios compare to
     "ratio": {"engine_vs_raw": 0.98, ...},                   # the headline ratios
     ...figures...}                      # every measured figure, flat, named with its unit

A bench builds it with `make_report(name, model=..., baseline=..., ratio=..., **figures)`;
`shape(name, result)` brings any other dict into this shape (a bench that only
returns figures still prints `name`, `model`, `baseline` and `ratio`), so the CLI
prints one shape whatever the bench. Ratios are always measured in the same run
as their baseline. Also `percentile`, the one percentile helper of the benches.

Not covered: running benches (`edgeagent.cli.bench`), comparing runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

HEAD = ("name", "model", "baseline", "ratio")


def make_report(name: str, *, model: str | None, baseline: str,
                ratio: Mapping[str, float], **figures: Any) -> dict[str, Any]:
    """A bench result in the shared shape; `figures` keep their order after the head."""
    return {"name": name, "model": model, "baseline": baseline, "ratio": dict(ratio),
            **figures}


def shape(name: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """`result` in the shared shape: the head first, missing head keys filled in.

    A result without `ratio` gets every top-level `*_vs_*` or `*ratio*` figure as
    its ratios; without `baseline`, an empty string."""
    figures = {k: v for k, v in result.items() if k not in HEAD}
    ratio = result.get("ratio")
    if not isinstance(ratio, Mapping):
        ratio = {k: v for k, v in figures.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and ("_vs_" in k or "ratio" in k)}
    return {"name": result.get("name") or name, "model": result.get("model"),
            "baseline": str(result.get("baseline") or ""), "ratio": dict(ratio), **figures}


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` percentile (0 ≤ q ≤ 1) of `values` (not empty)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[k])


def print_report(result: Mapping[str, Any], *, as_json: bool) -> None:
    """One JSON object on stdout, or a two-column table."""
    if as_json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", title=str(result.get("name", "")))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if key == "name":
            continue
        if isinstance(value, Mapping):  # ratios, per-setting or per-profile rows
            for sub, row in value.items():
                shown = ", ".join(f"{k} {v}" for k, v in row.items()) \
                    if isinstance(row, Mapping) else str(row)
                table.add_row(f"{key} {sub}", shown)
            continue
        table.add_row(key, str(value))
    Console().print(table)
