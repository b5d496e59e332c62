"""`distill run CONFIG.toml`: generate → filter → train → merge → convert → quantize.

A thin orchestration of the `edgeagent` commands themselves: each stage is
the argv of one subcommand, run in this process through `edgeagent.cli.main`,
so every option, check and error message is the stage command's own. All
outputs go under one directory:

    traj.jsonl          distill generate   (always runs: it resumes, a no-op when done)
    kept.jsonl          distill filter     (skipped when kept.jsonl exists)
    adapter/            distill train      (skipped when adapter/train_summary.json exists)
    merged/             distill merge      (skipped when merged/config.json exists)
    model.<type>.gguf   convert gguf       (skipped when the file exists)
    model.<QTYPE>.gguf  convert quantize   (skipped when the file exists)

Delete a stage's output to redo it (and what comes after it). The config:

    out = "runs/gsm8k"            # relative paths: from the config file's folder
    [generate]                    # required: teacher, data; any `distill generate` option
    teacher = "gold"
    data = "gsm8k_train_7473.jsonl"
    limit = 1000
    [filter]                      # optional: judge = URL, judge_model
    [train]                       # required: model; any `distill train` option
    model = "SmolLM2-135M-Instruct.Q4_1.gguf"
    [merge]                       # optional: dtype
    [convert]                     # optional: outtype (f16), quantize ("Q8_0"; false: none)

Keys are option names (`model_name` = `--model-name`); `true` adds a flag,
`false` leaves it out. A relative path value that exists next to the config
file is made absolute. Not covered: several teachers or datasets in one run,
staleness checks (an older output is not redone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from edgeagent.errors import UserError

SECTIONS = ("generate", "filter", "train", "merge", "convert")
# 4-bit requantization of a student of a 4-bit base rounds its small LoRA delta back
# onto the base's grid (README, "Quantizing a student of a quantized base"): 8-bit keeps it
DEFAULT_QUANT = "Q8_0"


@dataclass
class Stage:
    """One command of the pipeline and the output that says it is done."""

    name: str
    argv: list[str]
    output: Path
    done: Callable[[], bool]

    def command(self) -> str:
        import shlex

        return "edgeagent " + shlex.join(self.argv)


def _options(table: dict[str, Any], base: Path, skip: Sequence[str] = ()) -> list[str]:
    argv: list[str] = []
    for key, value in table.items():
        if key in skip or value is False or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
            continue
        if isinstance(value, (list, dict)):
            raise UserError(f"config: `{key}` must be a string, number or boolean")
        argv += [flag, _value(value, base)]
    return argv


def _value(value: Any, base: Path) -> str:
    """`value` as an argument; a relative path that exists under `base` made absolute."""
    text = str(value)
    if isinstance(value, str) and "://" not in text and not Path(text).is_absolute() \
            and (base / text).exists():
        return str((base / text).resolve())
    return text


def load_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such config file: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    unknown = [k for k in data if k not in (*SECTIONS, "out")]
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                        f"expected out and [{'], ['.join(SECTIONS)}]")
    for key in SECTIONS:
        if not isinstance(data.get(key, {}), dict):
            raise UserError(f"{path}: `{key}` must be a table ([{key}])")
    gen, train = data.get("generate", {}), data.get("train", {})
    for section, table, need in (("generate", gen, ("teacher", "data")), ("train", train,
                                                                          ("model",))):
        missing = [k for k in need if k not in table]
        if missing:
            raise UserError(f"{path}: [{section}] needs {', '.join(missing)}")
    return data


def plan(path: Path) -> list[Stage]:
    """The stages of the pipeline described by the config file at `path`."""
    data = load_config(path)
    base = path.resolve().parent
    out = Path(str(data.get("out", "distill-run")))
    out = out if out.is_absolute() else base / out
    traj, kept = out / "traj.jsonl", out / "kept.jsonl"
    adapter, merged = out / "adapter", out / "merged"
    conv = dict(data.get("convert", {}))
    outtype = str(conv.pop("outtype", "f16"))
    qtype = conv.pop("quantize", DEFAULT_QUANT)
    if conv:
        raise UserError(f"{path}: [convert] knows outtype and quantize, not {', '.join(conv)}")
    gguf = out / f"model.{outtype}.gguf"
    stages = [
        Stage("generate", ["distill", "generate", *_options(data["generate"], base),
                           "--out", str(traj)], traj, lambda: False),
        Stage("filter", ["distill", "filter", str(traj), *_options(data.get("filter", {}), base),
                         "--out", str(kept)], kept, kept.exists),
        Stage("train", ["distill", "train", *_options(data["train"], base), "--data", str(kept),
                        "--out", str(adapter)], adapter,
              (adapter / "train_summary.json").exists),
        Stage("merge", ["distill", "merge", "--base", _value(data["train"]["model"], base),
                        "--adapter", str(adapter), *_options(data.get("merge", {}), base),
                        "--out", str(merged)], merged, (merged / "config.json").exists),
        Stage("convert", ["convert", "gguf", str(merged), "--outtype", outtype,
                          "--out", str(gguf)], gguf, gguf.exists),
    ]
    if qtype:
        quant = out / f"model.{qtype}.gguf"
        stages.append(Stage("quantize", ["convert", "quantize", str(gguf), "--type", str(qtype),
                                         "--out", str(quant)], quant, quant.exists))
    return stages


def run(path: Path, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> int:
    """Run the stages in order, skipping finished ones; stop at the first that fails."""
    from edgeagent.cli import main

    stages = plan(path)
    stages[0].output.parent.mkdir(parents=True, exist_ok=True)
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)}] {stage.name}"
        if stage.done():
            echo(f"{head}: done ({stage.output} exists)")
            continue
        echo(f"{head}: {stage.command()}")
        if dry_run:
            continue
        code = main(stage.argv)
        if code != 0:  # the stage printed its own one-line reason
            import sys

            print(f"edgeagent: stage {stage.name} failed; rerun after fixing it "
                  "(finished stages are skipped)", file=sys.stderr)
            return code
    if not dry_run:
        echo(f"done: {stages[-1].output}")
    return 0
