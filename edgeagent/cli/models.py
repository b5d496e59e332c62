"""`edgeagent models list|add|rm|default|pull|fetch-default`: the model registry from the shell."""

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

    p = msub.add_parser("pull", help="download REPO[:FILE] from the Hugging Face Hub (HF_ENDPOINT)")
    p.add_argument("spec", metavar="REPO[:FILE]")
    p.add_argument("--name", help="registry name")
    p.add_argument("--default", action="store_true", help="also make it the default")
    p.set_defaults(handler=_pull)

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


def _pull(args: argparse.Namespace) -> int:
    from edgeagent.models.hub import pull
    from edgeagent.models.registry import Registry

    path, digest = pull(args.spec, show_progress=True)
    reg = Registry.load()
    entry = reg.add(path, name=args.name, source=f"hf:{args.spec}", sha256=digest)
    if args.default or reg.default is None:
        reg.default = entry.name
    reg.save()
    print(f"pulled {entry.name} -> {path}")
    return 0


def _fetch_default(args: argparse.Namespace) -> int:
    from edgeagent.models.default import DEFAULT_NAME
    from edgeagent.models.registry import ensure_default_model

    path = ensure_default_model()
    print(f"default model ready: {DEFAULT_NAME} -> {path}")
    return 0
