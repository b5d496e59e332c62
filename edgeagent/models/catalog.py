"""The curated model catalog, kept as data in `edgeagent/models/catalog.toml`.

`load_catalog()` reads it into `CatalogEntry`s; `find(name)` looks one up;
`fits_in_ram(entry)` compares its RAM estimate with the machine's available
memory (/proc/meminfo, or sysconf elsewhere). `models catalog` prints it,
`models pull NAME` pulls an entry, the TUI's switcher lists it. Not covered:
fetching a newer catalog from the network.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources

from edgeagent.errors import UserError


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    repo: str
    kind: str  # gguf | transformers | adapter
    quant: str
    params: str
    download_mb: int
    ram_mb: int
    license: str
    quality: str
    base: str | None = None


def load_catalog() -> list[CatalogEntry]:
    raw = resources.files("edgeagent.models").joinpath("catalog.toml").read_text("utf-8")
    data = tomllib.loads(raw)
    return [CatalogEntry(**m) for m in data.get("model", [])]


def find(name: str) -> CatalogEntry | None:
    return next((e for e in load_catalog() if e.name == name), None)


def available_ram_mb() -> int | None:
    """Memory available to a new process, in MB; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1000
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1_000_000
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(entry: CatalogEntry) -> None:
    """A UserError when `entry` needs more RAM than is available now."""
    free = available_ram_mb()
    if free is not None and entry.ram_mb > free:
        raise UserError(f"{entry.name} needs about {entry.ram_mb / 1000:.1f} GB of RAM; "
                        f"{free / 1000:.1f} GB is available")
