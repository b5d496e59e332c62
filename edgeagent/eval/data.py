"""Benchmark files: short names, finding them, and reading examples.

- `BENCHMARKS`: the paper's test subsets by short name (`hotpotqa`, `musique`,
  `2wiki`, `math500`, `gsm-hard`, `gsm8k`, `aime`, `olymmath`) -> file under
  `benchmarks/` of the data layout (see `datafiles`).
- `data_root(explicit)`: `--data-dir DIR`, else `$EDGEAGENT_DATA`, checked;
  None when neither is given. Without one, a short name is found in the
  user's data dir or downloaded once from the Hub, checksum-checked
  (`datafiles.locate`); nothing is looked up relative to the source tree.
- `load_benchmark(spec, root)`: a short name or any file in the same format:
  `.json` `{"metadata", "examples": [{"id", "question", "answer", …}]}` or
  `.jsonl` lines `{"question", "answer", "id"?}` (GSM8K: ids are line numbers).
  Ids are made strings and unique (a repeat gets `#2`, `#3`, …).

Not covered: the download itself (`datafiles`), the training subsets' short names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError
from edgeagent.scoring import Kind, task_kind

BENCHMARKS: dict[str, str] = {
    "hotpotqa": "test/hotpotqa_500.json",
    "musique": "test/musique_500.json",
    "2wiki": "test/2wikimultihopqa_500.json",
    "math500": "test/math_500.json",
    "gsm-hard": "test/gsm_hard_500.json",
    "gsm8k": "test/gsm8k_1319.jsonl",
    "aime": "test/aime_90.json",
    "olymmath": "test/olymath_200.json",
}
ALIASES = {"2wikimultihopqa": "2wiki", "math": "math500", "gsm_hard": "gsm-hard",
           "gsmhard": "gsm-hard", "olymath": "olymmath", "math-500": "math500"}
# the paper's Table 2 column order: factual QA first, then math
ORDER = ("hotpotqa", "musique", "2wiki", "math500", "gsm-hard", "gsm8k", "aime", "olymmath")


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    gold: Any


@dataclass(frozen=True)
class Benchmark:
    name: str  # short name, or the file's stem
    path: Path
    kind: Kind
    examples: list[Example]


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """`--data-dir`, else `$EDGEAGENT_DATA` (must exist); None when neither is set."""
    from edgeagent.eval.datafiles import explicit_dir

    return explicit_dir(explicit)


def parse_specs(text: str) -> list[str]:
    """`"hotpotqa, gsm8k"` -> `["hotpotqa", "gsm8k"]` (aliases resolved, order kept)."""
    out: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            continue
        name = ALIASES.get(name.lower(), name)
        if name not in out:
            out.append(name)
    if not out:
        raise UserError("--bench is empty; name one of " + ", ".join(BENCHMARKS))
    return out


def resolve_path(spec: str, root: Path | None) -> tuple[str, Path]:
    """(name, file) for a short name or a file path."""
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in BENCHMARKS:
        from edgeagent.eval.datafiles import locate

        return key, locate(f"benchmarks/{BENCHMARKS[key]}", root)
    path = Path(spec).expanduser()
    if path.is_file():
        return path.name.split(".")[0], path
    raise UserError(f"unknown benchmark {spec!r}: not a file and not one of "
                    + ", ".join(BENCHMARKS))


def read_examples(path: Path) -> list[Any]:
    """The records of a benchmark file: `{"examples": [...]}`, a JSON list, or JSON Lines.

    Shared by `eval`, `distill generate` and `distill gold`; bad input is a one-line
    `UserError` naming the file (and line).
    """
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise UserError(f"no such data file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{path} is empty")
    if stripped.startswith(("{", "[")):  # one JSON document?
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            if path.suffix.lower() == ".json":
                raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); "
                                "is the file truncated?") from None
            data = None  # JSON Lines (a broken line is reported below)
        if isinstance(data, dict) and "examples" in data:
            if not isinstance(data["examples"], list):
                raise UserError(f"{path}: `examples` is not a list")
            return list(data["examples"])
        if isinstance(data, list):
            return data
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: bad JSON ({exc.msg}); "
                            "is the file truncated?") from None
    return out


def _read_examples(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(read_examples(path)):
        if not isinstance(row, dict):
            raise UserError(f"{path}: example {i} is not a JSON object")
        rows.append(dict(row, id=row.get("id", i if path.suffix != ".jsonl" else str(i))))
    return rows


def load_benchmark(spec: str, root: Path | None = None) -> Benchmark:
    """Read one benchmark (see module docstring); `UserError` on any bad input."""
    name, path = resolve_path(spec, root)
    rows = _read_examples(path)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        if "question" not in row or "answer" not in row:
            raise UserError(f"{path}: example {i} lacks 'question' or 'answer'")
        base = str(row["id"])
        seen[base] = seen.get(base, 0) + 1
        ex_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
        examples.append(Example(ex_id, str(row["question"]), row["answer"]))
    if not examples:
        raise UserError(f"benchmark {path} has no examples")
    kind = task_kind(name, examples[0].gold)
    return Benchmark(name, path, kind, examples)
