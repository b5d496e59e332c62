"""The model registry: `registry.json` in the models dir, and name resolution.

An entry records what a user wants to see in `models list`: name, path,
architecture, quantization, size, parameters, source, license, sha256, and for
a pulled adapter model its LoRA GGUF and base. Entries are read from the GGUF
header (models/gguf_header.py; no model is loaded), so a truncated or foreign
file is refused at `add` time; a split GGUF is registered by its first shard
and needs all of them. The file is rewritten
atomically (temp file + rename).

Resolution (`resolve_model`): an explicit path → a registry name → the config
file's `model` → the registry default → the built-in default (fetched on
first use). Not covered: model files on remote machines.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeagent import locations
from edgeagent.atomic import atomic_write_text
from edgeagent.errors import UserError
from edgeagent.models import default

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class ModelEntry:
    name: str
    path: str
    architecture: str
    quant: str
    size_bytes: int
    source: str = "local"
    license: str = ""
    sha256: str | None = None
    added: str = ""
    lora: str | None = None  # a LoRA adapter GGUF applied on top of `path` (base + adapter)
    base: str | None = None  # the registry name of the base, for an adapter entry


_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.gguf$")


def gguf_files(path: Path) -> list[Path]:
    """`path` and, for the first of a split GGUF (`-00001-of-0000n.gguf`), its other shards."""
    m = _SHARD_RE.match(path.name)
    if m is None:
        return [path]
    n = int(m.group("n"))
    return [path.with_name(f"{m.group('stem')}-{k:05d}-of-{n:05d}.gguf") for k in range(1, n + 1)]


def read_gguf_info(path: Path) -> dict[str, Any]:
    """Architecture, quantization and name from a GGUF header; UserError if unreadable."""
    import gguf

    from edgeagent.engines.llama_native import check_gguf_header
    from edgeagent.models.gguf_header import read_header

    check_gguf_header(path)
    fields = read_header(path)
    arch = fields.get("general.architecture") or "unknown"
    file_type = fields.get("general.file_type")
    quant = "unknown"
    if isinstance(file_type, int):
        with contextlib.suppress(ValueError):
            quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    return {"architecture": str(arch), "quant": quant, "name": fields.get("general.name"),
            "type": fields.get("general.type") or "model",
            "source": fields.get("general.source.url")}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


class Registry:
    """The set of registered models, loaded from and saved to `registry.json`."""

    def __init__(self, path: Path, entries: dict[str, ModelEntry], default: str | None) -> None:
        self.path = path
        self.entries = entries
        self.default = default

    @classmethod
    def load(cls) -> Registry:
        path = locations.models_dir() / "registry.json"
        if not path.exists():
            return cls(path, {}, None)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = {e["name"]: ModelEntry(**e) for e in raw.get("models", [])}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UserError(f"the model registry {path} is damaged ({exc}); "
                            "fix or delete it, then `edgeagent models add` again") from None
        return cls(path, entries, raw.get("default"))

    def save(self) -> None:
        locations.ensure(self.path.parent)
        data = {"version": 1, "default": self.default,
                "models": [asdict(e) for e in self.entries.values()]}
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n")

    def add(self, path: Path, *, name: str | None = None, source: str = "local",
            license: str = "", sha256: str | None = None) -> ModelEntry:
        # absolute but not symlink-resolved: a Hugging Face cache snapshot links to a blob
        # named by its hash, and split GGUFs find their shards by name
        path = Path(os.path.abspath(path.expanduser()))
        info = read_gguf_info(path)
        if info["type"] == "adapter":
            raise UserError(f"{path.name} is a LoRA adapter, not a model: apply it with "
                            f"`edgeagent ask --lora {path}` on its base model")
        if source == "local" and info["source"]:
            source = f"converted:{info['source']}"
        if sha256 is None:
            from edgeagent.wheelfetch import sha256_file

            sha256 = sha256_file(path)
        if name is None:
            name = _slug(str(info.get("name") or path.stem))
            if info["quant"] != "unknown" and info["quant"].lower() not in name:
                name = f"{name}-{info['quant'].lower()}"
        if not _NAME_RE.match(name):
            raise UserError(f"invalid model name {name!r}: use letters, digits, . _ : -")
        shards = gguf_files(path)
        missing = [p.name for p in shards if not p.exists()]
        if missing:
            raise UserError(f"{path.name} is split; missing shard(s): {', '.join(missing)}")
        entry = ModelEntry(
            name=name, path=str(path), architecture=info["architecture"], quant=info["quant"],
            size_bytes=sum(p.stat().st_size for p in shards), source=source, license=license,
            sha256=sha256,
            added=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        self.entries[name] = entry
        return entry

    def add_adapter(self, base: ModelEntry, lora: Path, *, name: str, source: str,
                    license: str = "") -> ModelEntry:
        """Register `base` + the LoRA adapter GGUF `lora` as one model called `name`."""
        lora = Path(os.path.abspath(lora.expanduser()))
        info = read_gguf_info(lora)
        if info["type"] != "adapter":
            raise UserError(f"{lora.name} is not a LoRA adapter GGUF")
        if info["architecture"] != base.architecture:
            raise UserError(f"{lora.name} is a {info['architecture']} adapter; the base "
                            f"{base.name} is {base.architecture}")
        if not _NAME_RE.match(name):
            raise UserError(f"invalid model name {name!r}: use letters, digits, . _ : -")
        entry = ModelEntry(
            name=name, path=base.path, architecture=base.architecture, quant=base.quant,
            size_bytes=base.size_bytes + lora.stat().st_size, source=source,
            license=license or base.license, sha256=base.sha256,
            added=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            lora=str(lora), base=base.name,
        )
        self.entries[name] = entry
        return entry

    def remove(self, name: str) -> ModelEntry:
        entry = self.get(name)
        del self.entries[name]
        if self.default == name:
            self.default = None
        return entry

    def get(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none registered"
            raise UserError(f"unknown model {name!r} (known: {known})") from None


def config_model() -> str | None:
    path = locations.config_file()
    if not path.exists():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    value = data.get("model")
    return str(value) if value else None


def resolve_model(spec: str | None = None, *, fetch_default: bool = True) -> Path:
    """The GGUF path for `spec` (a path or a registered name) or the default."""
    return resolve(spec, fetch_default=fetch_default)[0]


def resolve(spec: str | None = None, *, fetch_default: bool = True) -> tuple[Path, Path | None]:
    """(GGUF path, LoRA adapter GGUF or None) for `spec` or the default: a registered
    base + adapter pair brings its adapter."""
    reg = Registry.load()
    for candidate in (spec, config_model(), reg.default):
        if not candidate:
            continue
        if candidate in reg.entries:
            entry = reg.entries[candidate]
            path = Path(entry.path)
            lora = Path(entry.lora) if entry.lora else None
            for needed in (path, lora):
                if needed is not None and not needed.exists():
                    raise UserError(f"model {candidate!r} is registered but {needed} is missing;"
                                    f" run `edgeagent models rm {candidate}` and add it again")
            return path, lora
        path = Path(candidate).expanduser()
        if path.suffix == ".gguf" or path.exists() or os.sep in candidate:
            if not path.exists():
                raise UserError(f"model file not found: {path}")
            return path, None
        raise UserError(f"unknown model {candidate!r}; see `edgeagent models list`")
    if not fetch_default:
        raise UserError("no model configured; run `edgeagent models pull` or `models add`")
    return ensure_default_model(), None


def model_label(spec: str | None, path: Path) -> str:
    """How a loaded model is named (trajectories, the server): its registry name when
    it has one, else its file name without `.gguf`."""
    reg = Registry.load()
    if spec and spec in reg.entries:
        return spec
    resolved = Path(path).resolve()
    for name, entry in reg.entries.items():
        if Path(entry.path).resolve() == resolved:
            return name
    return resolved.stem


def ensure_default_model() -> Path:
    """Fetch (if needed), verify and register the default model; return its path."""
    path = default.fetch_default_model()
    reg = Registry.load()
    if default.DEFAULT_NAME not in reg.entries:
        reg.add(path, name=default.DEFAULT_NAME, source=default.DEFAULT_SOURCE,
                license=default.LICENSE, sha256=default.DEFAULT_MODEL.member_sha256)
    if reg.default is None:
        reg.default = default.DEFAULT_NAME
    reg.save()
    return path
