"""Several eval runs side by side, read like the paper's Table 2.

`load_runs(dirs)` reads each folder's `summary.json`; `labels(runs)` names the
rows (`model · mode · votes`, plus other settings where the runs differ; the
model only when it differs);
`table(runs, metric)` is a rich table: one row per run, one column per
benchmark (factual QA first, then math, in the paper's order) plus the
macro average, scores in percent, `(n=…)` where a cell's question
count is partial or differs between runs, the best of a column highlighted
(highest score, lowest error rate, time or tokens; none for counts such as
steps); `markdown(runs, metric)` is the same table as GitHub markdown;
`chart(runs, png, metric)` draws grouped bars (benchmarks on the x axis, one
bar per run) with matplotlib (imported here only, Agg backend).

Not covered: significance tests, runs with different question sets (the
`n` of each cell is shown so a partial run is visible).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.errors import UserError
from edgeagent.eval.data import ORDER

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class Run:
    path: Path
    summary: dict[str, Any]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.summary.get("run") or {})


def load_runs(dirs: list[str | Path]) -> list[Run]:
    if not dirs:
        raise UserError("name at least one eval output folder")
    runs = []
    for d in dirs:
        path = Path(d)
        f = path / "summary.json" if path.is_dir() else path
        try:
            data = json.loads(f.read_text("utf-8"))
        except FileNotFoundError:
            raise UserError(f"no summary.json in {d} (not an eval output folder?)") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {f}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
            raise UserError(f"{f} is not an eval summary")
        runs.append(Run(path, data))
    return runs


def _describe(settings: dict[str, Any], key: str) -> str:
    value = settings.get(key)
    if key == "votes":
        return f"votes {value}"
    if key == "model":
        return str(value).removesuffix(".gguf")
    return f"{key} {value}" if key not in ("mode",) else str(value)


def labels(runs: list[Run]) -> list[str]:
    """Row names: the settings that differ between runs (always the mode and votes)."""
    keys = ["model", "mode", "votes"]
    agents = [r for r in runs if r.settings.get("mode") == "agent"]
    for k in ("lora", "prompt", "temperature", "max_steps", "wiki", "judge", "straggler"):
        # prompt, steps and wiki only matter to agent runs
        among = agents if k in ("prompt", "max_steps", "wiki") else runs
        if len({json.dumps(r.settings.get(k)) for r in among}) > 1:
            keys.append(k)
    if len({json.dumps(r.settings.get("model")) for r in runs}) == 1 and len(runs) > 1:
        keys.remove("model")
    out = [" · ".join(_describe(r.settings, k) for k in keys) for r in runs]
    if len(set(out)) < len(out):  # same settings: tell them apart by folder
        out = [f"{o} ({r.path.name})" for o, r in zip(out, runs, strict=True)]
    return out


def columns(runs: list[Run]) -> list[str]:
    """Benchmarks present in any run, the paper's order first, then the rest by name."""
    names = {n for r in runs for n in r.summary["benchmarks"]}
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


def _cell(bench: dict[str, Any] | None, metric: str) -> float | None:
    if not bench or metric not in bench:
        return None
    return float(bench[metric])


def check_metric(runs: list[Run], metric: str) -> None:
    """A one-line `UserError` when no benchmark of any run has `metric`."""
    known = {k for r in runs for b in r.summary["benchmarks"].values() for k in b
             if isinstance(b.get(k), (int, float)) and not isinstance(b.get(k), bool)}
    if metric not in known:
        raise UserError(f"unknown metric {metric!r}; one of: " + ", ".join(sorted(known)))


def rows(runs: list[Run], metric: str = "score") -> list[tuple[str, list[float | None]]]:
    """(label, values per column + the average over the columns present)."""
    check_metric(runs, metric)
    cols = columns(runs)
    out = []
    for name, r in zip(labels(runs), runs, strict=True):
        vals = [_cell(r.summary["benchmarks"].get(c), metric) for c in cols]
        present = [v for v in vals if v is not None]
        vals.append(sum(present) / len(present) if present else None)
        out.append((name, vals))
    return out


def _formatted(runs: list[Run], metric: str) -> list[tuple[str, list[tuple[str, bool]]]]:
    """(label, [(cell text, best in its column)] per benchmark + avg); `(n=…)` where a
    cell's question count is partial or differs between runs; `–` where missing."""
    cols = columns(runs)
    data = rows(runs, metric)
    pick = max if metric in _HIGHER_BETTER else min if metric in _LOWER_BETTER else None
    best: list[float | None] = []
    for i in range(len(cols) + 1):
        present = [v for _, vs in data if (v := vs[i]) is not None]
        # no best where every run ties, nor for counts such as steps per question
        best.append(pick(present) if pick and present and max(present) > min(present)
                    else None)
    ns = [{r.summary["benchmarks"].get(c, {}).get("n") for r in runs} - {None} for c in cols]
    out = []
    for (name, vals), r in zip(data, runs, strict=True):
        cells = []
        for i, v in enumerate(vals):
            if v is None:
                cells.append(("–", False))
                continue
            text = f"{100 * v:.1f}" if metric in _PERCENT else f"{v:.2f}"
            if i < len(cols):
                b = r.summary["benchmarks"][cols[i]]
                if b.get("n") != b.get("total") or len(ns[i]) > 1:
                    text += f" (n={b.get('n')})"
            cells.append((text, best[i] is not None and v == best[i]))
        out.append((name, cells))
    return out


def _kinds(runs: list[Run]) -> dict[str, str]:
    return {c: next((r.summary["benchmarks"][c].get("kind") for r in runs
                     if c in r.summary["benchmarks"]), "") for c in columns(runs)}


def table(runs: list[Run], metric: str = "score") -> Table:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"edgeagent eval — {metric} (%)" if metric in _PERCENT
              else f"edgeagent eval — {metric}", show_lines=False)
    t.add_column("run", style="bold")
    for c, kind in _kinds(runs).items():
        t.add_column(f"{c}\n[dim]{kind}[/]", justify="right")
    t.add_column("avg", justify="right", style="bold")
    for name, cells in _formatted(runs, metric):
        t.add_row(escape(name), *(f"[green]{escape(x)}[/]" if b else escape(x)
                                  for x, b in cells))
    return t


def markdown(runs: list[Run], metric: str = "score") -> str:
    """The same table as GitHub markdown (best of each column in bold), for notes and issues."""
    unit = " (%)" if metric in _PERCENT else ""
    head = ["run", *(f"{c} ({k})" if k else c for c, k in _kinds(runs).items()), "avg"]
    lines = [f"{metric}{unit}", "", "| " + " | ".join(head) + " |",
             "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, cells in _formatted(runs, metric):
        lines.append("| " + " | ".join([name.replace("|", "/"),
                                        *(f"**{x}**" if b else x for x, b in cells)]) + " |")
    return "\n".join(lines) + "\n"


_HIGHER_BETTER = {"score", "em", "f1", "judge", "accuracy", "answered"}
_LOWER_BETTER = {"parse_error_rate", "exec_error_rate", "fallback_rate", "seconds_per_question",
                 "prompt_tokens_per_question", "completion_tokens_per_question"}
_PERCENT = {"score", "em", "f1", "judge", "accuracy", "answered", "parse_error_rate",
            "exec_error_rate", "fallback_rate"}


def chart(runs: list[Run], png: Path, metric: str = "score") -> Path:
    """Grouped bar chart of `metric` per benchmark (and the average) as a PNG."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise UserError("the chart needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [*columns(runs), "avg"]
    data = rows(runs, metric)
    scale = 100.0 if metric in _PERCENT else 1.0
    width = 0.8 / max(1, len(data))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(cols) + 2), 4.2), dpi=120)
    for j, (name, vals) in enumerate(data):
        xs = [i + (j - (len(data) - 1) / 2) * width for i in range(len(cols))]
        heights = [scale * (v or 0.0) for v in vals]
        bars = ax.bar(xs, heights, width=width * 0.95, label=name)
        for b, v in zip(bars, vals, strict=True):
            if v is not None:
                ax.annotate(f"{scale * v:.0f}" if scale == 100 else f"{v:.1f}",
                            (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=7)
    top = max((scale * v for _, vals in data for v in vals if v is not None), default=0.0)
    ax.set_ylim(0, max(top * 1.2, 10.0 if scale == 100 else 1.0))
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_ylabel(f"{metric} (%)" if scale == 100 else metric)
    ax.set_title(f"edgeagent eval: {metric}")
    ax.legend(fontsize=8, loc="upper right")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(png, format="png")
    except OSError as exc:
        raise UserError(f"cannot write {png}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return png
