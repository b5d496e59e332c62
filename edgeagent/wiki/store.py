"""Where wiki indexes live on disk, their metadata, and the atomic swap.

Layout of one index, `ROOT/NAME/` (ROOT is `locations.wiki_dir()` unless given):

    wiki.json          metadata: name, source, passages, created, attribution,
                       license, profile, and `generation`, the live subfolder
    g-<id>/            the Tantivy index of one completed build
    .tmp-<pid>-<id>/   a build in progress (or a killed one, removed later)

A build writes a fresh `.tmp-*` folder, renames it to a new `g-*` folder, and
then replaces `wiki.json` with `os.replace` (atomic on POSIX and Windows). So
`wiki.json` names either the old complete index or the new complete one, and
a build killed at any instant (even with SIGKILL) leaves the previous index
searchable. Old generations and dead temp folders are removed afterwards.

Not covered: locking against two concurrent builds of the same name (the
last one to finish wins; both indexes stay whole).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeagent.atomic import atomic_write_text
from edgeagent.errors import UserError
from edgeagent.locations import wiki_dir

META_FILE = "wiki.json"
META_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class IndexMeta:
    """The metadata JSON of one index."""

    name: str
    source: str
    format: str
    passages: int
    created: str
    profile: str
    generation: str
    attribution: str = ""
    license: str = ""
    build_seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)
    version: int = META_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> IndexMeta:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


def root_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else wiki_dir()


def check_name(name: str) -> str:
    if not _NAME.match(name) or name in (".", ".."):
        raise UserError(
            f"invalid index name {name!r}: use letters, digits, '.', '_' or '-' "
            "(start with a letter or digit, at most 64 characters)"
        )
    return name


def index_dir(name: str, root: Path | None = None) -> Path:
    return root_dir(root) / check_name(name)


def read_meta(name: str, root: Path | None = None) -> IndexMeta | None:
    """The metadata of a completed index, or None when there is none."""
    path = index_dir(name, root) / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"index {name!r} has unreadable metadata ({path}): {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"index {name!r} has invalid metadata ({path})")
    return IndexMeta.from_dict(data)


def live_path(name: str, root: Path | None = None) -> tuple[IndexMeta, Path]:
    """Metadata and Tantivy folder of a completed index; `UserError` when it does not exist."""
    meta = read_meta(name, root)
    if meta is None:
        known = ", ".join(m.name for m in list_indexes(root))
        known = known or "none; try `edgeagent wiki starter`"
        raise UserError(f"no wiki index named {name!r} (indexes: {known})")
    path = index_dir(name, root) / meta.generation
    if not path.is_dir():
        raise UserError(f"index {name!r} is damaged: {path} is missing; rebuild it with --force")
    return meta, path


def list_indexes(root: Path | None = None) -> list[IndexMeta]:
    base = root_dir(root)
    if not base.is_dir():
        return []
    out: list[IndexMeta] = []
    for child in sorted(base.iterdir()):
        if not child.is_dir() or not _NAME.match(child.name):
            continue
        try:
            meta = read_meta(child.name, root)
        except UserError:
            continue
        if meta is not None:
            out.append(meta)
    return out


def new_temp_dir(name: str, root: Path | None = None) -> Path:
    """A fresh `.tmp-<pid>-<id>` folder inside the index folder (created)."""
    folder = index_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, meta: IndexMeta, root: Path | None = None) -> Path:
    """Make the build in `tmp` the live index (atomic); returns its folder."""
    folder = index_dir(meta.name, root)
    generation = f"g-{uuid.uuid4().hex[:12]}"
    live = folder / generation
    os.replace(tmp, live)
    meta.generation = generation
    data = json.dumps(asdict(meta), ensure_ascii=False, indent=2) + "\n"
    atomic_write_text(folder / META_FILE, data)
    with contextlib.suppress(OSError):
        _fsync_dir(folder)
    cleanup(meta.name, root)
    return live


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def cleanup(name: str, root: Path | None = None) -> None:
    """Remove old generations and the temp folders of dead builds."""
    folder = index_dir(name, root)
    if not folder.is_dir():
        return
    meta = read_meta(name, root)
    for child in folder.iterdir():
        remove = False
        if child.name.startswith("g-"):
            remove = meta is None or child.name != meta.generation
        elif child.name.startswith(".tmp-"):
            parts = child.name.split("-")
            remove = len(parts) >= 3 and parts[1].isdigit() and not _pid_alive(int(parts[1]))
        elif child.name.startswith(f".{META_FILE}.") and child.name.endswith(".part"):
            pid = child.name[len(f".{META_FILE}."):].split(".")[0]  # see edgeagent.atomic
            remove = pid.isdigit() and not _pid_alive(int(pid))
        if remove:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def remove_index(name: str, root: Path | None = None) -> None:
    folder = index_dir(name, root)
    if read_meta(name, root) is None and not folder.exists():
        raise UserError(f"no wiki index named {name!r}")
    # First drop the metadata so a half-removed index is never listed.
    (folder / META_FILE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        raise UserError(f"could not remove {folder} completely; remove it by hand")
