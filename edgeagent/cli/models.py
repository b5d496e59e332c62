"""`edgeagent models list|add|rm|default|pull|catalog|fetch-default`: models from the shell.

`pull` draws the whole pipeline (download, convert, quantize, verify, adapter,
register) as one progress line on a terminal, and one line per stage
otherwise; the work is in edgeagent/models/pull.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("models", help="list, add, remove, pull and choose models")
    msub = parser.add_subparsers(dest="models_command", metavar="ACTION")

    p = msub.add_parser("list", help="registered models")
    p.add_argument("--json", action="store_true")
    p.add_argument("--paths", action="store_true", help="print name and path, one model a line")
    p.set_defaults(handler=_list)

    p = msub.add_parser("add", help="register a GGUF file")
    p.add_argument("path")
    p.add_argument("--name", help="registry name (default: from the file)")
    p.add_argument("--source", default="local",
                   help="where it came from (default: the HF dir a converted file records)")
    p.add_argument("--default", action="store_true", help="also make it the default")
    p.set_defaults(handler=_add)

    p = msub.add_parser("rm", help="unregister a model (the file stays unless --delete)")
    p.add_argument("name")
    p.add_argument("--delete", action="store_true", help="also delete its file from the models dir")
    p.set_defaults(handler=_rm)

    p = msub.add_parser("default", help="show or set the default model")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=_default)

    p = msub.add_parser(
        "pull", help="download a model from the Hugging Face Hub and register it",
        description="Pull REPO[:FILE] or a catalog name (`edgeagent models catalog`) from the "
        "Hugging Face Hub (HF_ENDPOINT, HF_TOKEN, the shared HF cache): a GGUF repo (the "
        "--quant file, shards included), a transformers safetensors repo (converted, "
        "quantized, verified) or a PEFT LoRA adapter repo (base + adapter as one model).")
    p.add_argument("spec", metavar="REPO[:FILE]|NAME")
    p.add_argument("--quant", metavar="Q",
                   help="quantization (default Q4_K_M; GGUF repos: then Q4_0, Q8_0)")
    p.add_argument("--name", help="registry name")
    p.add_argument("--base", metavar="REPO|NAME",
                   help="adapters: the base model (default: base_model_name_or_path)")
    p.add_argument("--merge", action="store_true",
                   help="adapters: merge into the base's weights and quantize one GGUF")
    p.add_argument("--default", action="store_true", help="also make it the default")
    p.set_defaults(handler=_pull)

    p = msub.add_parser("catalog", help="curated models to pull by name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_catalog)

    p = msub.add_parser("fetch-default", help="fetch and register the default model (first run)")
    p.set_defaults(handler=_fetch_default)


def _human(n: int) -> str:
    size = float(n)  # decimal units, as Ollama and the Hub show them
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _list(args: argparse.Namespace) -> int:
    from edgeagent.models.registry import Registry

    reg = Registry.load()
    if args.json:
        from dataclasses import asdict

        json.dump({"default": reg.default, "models": [asdict(e) for e in reg.entries.values()]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not reg.entries:
        print("no models registered; run `edgeagent models fetch-default` or `models add PATH`")
        return 0
    if args.paths:
        for e in reg.entries.values():
            print(f"{e.name}\t{e.path}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold", caption="* default")
    for col in ("", "name", "arch", "quant", "size", "source"):
        table.add_column(col, no_wrap=col == "name")
    for e in reg.entries.values():
        missing = "" if Path(e.path).exists() else "missing! "
        row = ["*" if e.name == reg.default else "", e.name, e.architecture, e.quant,
               _human(e.size_bytes), missing + e.source]
        table.add_row(*row)
    Console().print(table)
    return 0


def _add(args: argparse.Namespace) -> int:
    from edgeagent.models.registry import Registry

    reg = Registry.load()
    entry = reg.add(Path(args.path), name=args.name, source=args.source)
    if args.default or reg.default is None:
        reg.default = entry.name
    reg.save()
    print(f"added {entry.name} ({entry.architecture}, {entry.quant}, {_human(entry.size_bytes)})")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from edgeagent import locations
    from edgeagent.models.registry import Registry

    reg = Registry.load()
    entry = reg.remove(args.name)
    reg.save()
    if entry.lora and args.delete:  # an adapter entry: delete the adapter, keep the base
        lora = Path(entry.lora)
        if lora.exists() and locations.models_dir().resolve() in lora.resolve().parents:
            lora.unlink()
        print(f"removed {entry.name} and deleted {lora}")
        return 0
    path = Path(entry.path)
    if args.delete and path.exists():
        if locations.models_dir().resolve() in path.resolve().parents:
            path.unlink()
            print(f"removed {entry.name} and deleted {path}")
            return 0
        print(f"removed {entry.name}; kept {path} (outside the models dir)")
        return 0
    print(f"removed {entry.name}")
    return 0


def _default(args: argparse.Namespace) -> int:
    from edgeagent.models.registry import Registry

    reg = Registry.load()
    if args.name is None:
        print(reg.default or "(none: the built-in default is fetched on first use)")
        return 0
    reg.get(args.name)
    reg.default = args.name
    reg.save()
    print(f"default model: {args.name}")
    return 0


class _PullDisplay:
    """One progress line for the whole pull on a TTY; a line per stage otherwise."""

    def __init__(self) -> None:
        self.stage = ""
        self._bar: Any = None
        self._task: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<9}"), BarColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=None, detail="")

    def __call__(self, stage: str, fraction: float | None, detail: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=stage, detail=detail[-60:],
                             total=None if fraction is None else 1.0,
                             completed=fraction or 0.0)
        elif stage != self.stage:
            print(f"{stage}: {detail}", file=sys.stderr, flush=True)
        self.stage = stage

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _pull(args: argparse.Namespace) -> int:
    from edgeagent.models.pull import pull
    from edgeagent.models.registry import Registry

    display = _PullDisplay()
    try:
        entry = pull(args.spec, quant=args.quant, name=args.name, base=args.base,
                     merge=args.merge, report=display)
    finally:
        display.close()
    if args.default:
        reg = Registry.load()
        reg.default = entry.name
        reg.save()
    extra = f" + adapter {Path(entry.lora).name}" if entry.lora else ""
    print(f"pulled {entry.name} ({entry.architecture}, {entry.quant}, "
          f"{_human(entry.size_bytes)}) -> {entry.path}{extra}")
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edgeagent.models.catalog import available_ram_mb, load_catalog
    from edgeagent.models.registry import Registry

    entries = load_catalog()
    have = set(Registry.load().entries)
    if args.json:
        json.dump([asdict(e) | {"pulled": e.name in have} for e in entries], sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    free = available_ram_mb()
    caption = "✓ pulled · RAM at the default quant, 4k context · paper: Kang et al. 2025"
    if free is not None:
        caption += f" · {free / 1000:.1f} GB available now"
    table = Table(header_style="bold", caption=caption)
    for col in ("", "name", "params", "quant", "download", "RAM", "license", "agent quality"):
        table.add_column(col, no_wrap=col in ("name", "download", "RAM"))
    for e in entries:
        table.add_row("✓" if e.name in have else "", e.name, e.params, e.quant,
                      f"{e.download_mb / 1000:.1f} GB", f"{e.ram_mb / 1000:.1f} GB",
                      e.license, e.quality)
    Console(width=max(Console().width, 160) if not sys.stdout.isatty() else None).print(table)
    return 0


def _fetch_default(args: argparse.Namespace) -> int:
    from edgeagent.models.default import DEFAULT_NAME
    from edgeagent.models.registry import ensure_default_model

    path = ensure_default_model()
    print(f"default model ready: {DEFAULT_NAME} -> {path}")
    return 0
