"""`distill run CONFIG.toml`: generate → filter → train → merge → convert → quantize.

A thin orchestration of the library functions behind the `edgeagent distill`
and `convert` commands (`trainer.generate`, `trainer.filter`, `trainer.train`,
`trainer.merge`, `converters`), so every check and error message is the
stage's own. Each stage is also shown as the `edgeagent` command that does the
same (`--dry-run` prints them). All outputs go under one directory:

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
    [convert]                     # optional: outtype (f16), quantize ("Q4_0"; false: none)

Keys are option names (`model_name` = `--model-name`, `no_resume = true` =
`--no-resume`); an unknown key is refused before anything runs. A relative
path value that exists next to the config file is made absolute. Not covered:
several teachers or datasets in one run, staleness checks (an older output is
not redone).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError

SECTIONS = ("generate", "filter", "train", "merge", "convert")
Report = Callable[[], list[str]]  # runs a stage; returns what it did, in lines


@dataclass
class Stage:
    """One stage of the pipeline, the output that says it is done, and how to run it."""

    name: str
    argv: list[str]  # the same stage as an `edgeagent` command (shown, never parsed)
    output: Path
    done: Callable[[], bool]
    call: Report

    def command(self) -> str:
        import shlex

        return "edgeagent " + shlex.join(self.argv)


def _options(table: dict[str, Any], base: Path) -> list[str]:
    """`table` as command-line options (for showing a stage as a command)."""
    argv: list[str] = []
    for key, value in table.items():
        if value is False or value is None:
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


def _kwargs(section: str, table: dict[str, Any], base: Path, cls: Any,
            extra: Sequence[str] = ()) -> dict[str, Any]:
    """`table` as keyword arguments of the dataclass `cls` (plus `extra` names)."""
    known = {f.name: str(f.type) for f in fields(cls)}
    known.update({name: "" for name in extra})
    out: dict[str, Any] = {}
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            raise UserError(f"config: `{key}` must be a string, number or boolean")
        if key.startswith("no_") and key[3:] in known and value is True:
            key, value = key[3:], False  # no_resume = true is --no-resume
        if key not in known:
            raise UserError(f"config: [{section}] has no option `{key}` "
                            f"(known: {', '.join(sorted(known))})")
        if isinstance(value, str):
            value = _value(value, base)
            if "Path" in known[key]:
                value = Path(value)
        out[key] = value
    return out


def _generate(table: dict[str, Any], base: Path, out: Path) -> Report:
    from trainer.generate import GenerateConfig

    kw = _kwargs("generate", table, base, GenerateConfig, extra=("wiki",))
    wiki = kw.pop("wiki", None)  # an index name, None (the starter) or False (no_wiki)
    cfg = GenerateConfig(**{**kw, "out": out})

    def call() -> list[str]:
        from edgeagent.wiki.starter import open_search
        from trainer.generate import generate

        search = None if wiki is False else lambda: open_search(str(wiki) if wiki else None)
        return generate(cfg, open_search=search).lines()

    return call


def _filter(table: dict[str, Any], src: Path, out: Path) -> Report:
    unknown = [k for k in table if k not in ("judge", "judge_model")]
    if unknown:
        raise UserError(f"config: [filter] knows judge and judge_model, not {', '.join(unknown)}")

    def call() -> list[str]:
        from trainer.filter import filter_path

        report = filter_path(src, out, judge_url=table.get("judge"),
                             judge_model=table.get("judge_model"))
        return [*report.lines(), f"wrote {out}"]

    return call


def _train(table: dict[str, Any], base: Path, data: Path, out: Path) -> Report:
    from trainer.train import TrainConfig

    cfg = TrainConfig(**{**_kwargs("train", table, base, TrainConfig), "data": data, "out": out})

    def call() -> list[str]:
        from trainer import require_train_extra

        require_train_extra()
        from edgeagent.progress import progress_bar
        from trainer.train import train

        bar = progress_bar("loss {task.fields[loss]:.4f}", eta=True)
        with bar:
            task = bar.add_task("train", total=None, loss=float("nan"))

            def on_step(e: dict[str, Any]) -> None:
                bar.update(task, completed=e["step"], total=e["of"], loss=e["loss"])

            r = train(cfg, on_step=on_step)
        return [f"trained {r.steps} steps on {r.examples} examples: loss {r.first_loss:.4f} -> "
                f"{r.last_loss:.4f} in {r.seconds:.1f} s; adapter in {out}"]

    return call


def _merge(table: dict[str, Any], base_model: str, adapter: Path, out: Path) -> Report:
    unknown = [k for k in table if k != "dtype"]
    if unknown:
        raise UserError(f"config: [merge] knows dtype, not {', '.join(unknown)}")

    def call() -> list[str]:
        from trainer import require_train_extra

        require_train_extra()
        from trainer.merge import merge

        r = merge(base_model, adapter, out, dtype=table.get("dtype"))
        return [f"merged {r.parameters:,} parameters ({r.dtype}) into {r.path}"]

    return call


def _convert(src: Path, out: Path, outtype: str) -> Report:
    def call() -> list[str]:
        from converters.hf_gguf import convert_to_gguf
        from edgeagent.progress import progress_callback

        with progress_callback("converting", unit="bytes") as update:
            r = convert_to_gguf(src, out, outtype=outtype, progress=update)
        return [f"wrote {r.path} ({r.arch}, {r.outtype}, {r.n_tensors} tensors)"]

    return call


def _quantize(src: Path, out: Path, qtype: str) -> Report:
    def call() -> list[str]:
        from converters.quantize import quantize_gguf
        from edgeagent.progress import progress_callback

        with progress_callback(f"quantizing to {qtype.upper()}") as update:
            r = quantize_gguf(src, qtype, out=out, progress=update)
        return [f"wrote {r.path} ({r.qtype})"]

    return call


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
    qtype = conv.pop("quantize", "Q4_0")
    if conv:
        raise UserError(f"{path}: [convert] knows outtype and quantize, not {', '.join(conv)}")
    gen, filt = data["generate"], data.get("filter", {})
    train, merge = data["train"], data.get("merge", {})
    base_model = _value(train["model"], base)
    gguf = out / f"model.{outtype}.gguf"
    stages = [
        Stage("generate", ["distill", "generate", *_options(gen, base), "--out", str(traj)],
              traj, lambda: False, _generate(gen, base, traj)),
        Stage("filter", ["distill", "filter", str(traj), *_options(filt, base), "--out",
                         str(kept)], kept, kept.exists, _filter(filt, traj, kept)),
        Stage("train", ["distill", "train", *_options(train, base), "--data", str(kept),
                        "--out", str(adapter)], adapter,
              (adapter / "train_summary.json").exists, _train(train, base, kept, adapter)),
        Stage("merge", ["distill", "merge", "--base", base_model, "--adapter", str(adapter),
                        *_options(merge, base), "--out", str(merged)], merged,
              (merged / "config.json").exists, _merge(merge, base_model, adapter, merged)),
        Stage("convert", ["convert", "gguf", str(merged), "--outtype", outtype,
                          "--out", str(gguf)], gguf, gguf.exists,
              _convert(merged, gguf, outtype)),
    ]
    if qtype:
        quant = out / f"model.{qtype}.gguf"
        stages.append(Stage("quantize", ["convert", "quantize", str(gguf), "--type", str(qtype),
                                         "--out", str(quant)], quant, quant.exists,
                            _quantize(gguf, quant, str(qtype))))
    return stages


def run(path: Path, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> int:
    """Run the stages in order, skipping finished ones; stop at the first that fails."""
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
        try:
            lines = stage.call()
        except UserError as exc:
            raise UserError(f"stage {stage.name} failed: {exc}; rerun after fixing it "
                            "(finished stages are skipped)", exit_code=exc.exit_code) from None
        for line in lines:
            echo(line)
    if not dry_run:
        echo(f"done: {stages[-1].output}")
    return 0
