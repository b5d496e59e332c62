"""Write a file or a folder so that readers see either the old one or the whole new one.

    with atomic_output(dest) as tmp:      # a temp file beside `dest`
        tmp.write_bytes(data)             # on success: fsync, then os.replace over dest
    atomic_write_text(dest, text)         # the same for one string
    with atomic_folder(dest) as tmp:      # a temp folder beside `dest`
        model.save_pretrained(tmp)        # on success: the old folder is swapped out

When the block fails (disk full, Ctrl+C, a bug) the temp file or folder is
removed and `dest` is untouched. A full disk or a read-only directory becomes a
one-line `UserError`. The temp names carry the writer's pid
(`.NAME.PID.XXXX.part`, `.NAME.PID.tmp`) so a cleanup can tell a dead
writer's leftovers from a live one's; during a folder swap the old folder is
`NAME.old` (`previous_folder`). Not covered: multi-file outputs (split
GGUFs), fsync of the directory entry (callers that need it do it).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeagent.errors import UserError


@contextmanager
def _disk_errors(dest: Path) -> Iterator[None]:
    """A full disk or a read-only target as a one-line `UserError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on the device while writing {dest}; "
                            "nothing was written") from None
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise UserError(f"cannot write {dest}: {exc.strerror}") from None
        raise


@contextmanager
def atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a temp path next to `dest`; move it over `dest` on success."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output directory {parent} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{dest.name}.{os.getpid()}.",
                                        suffix=".part")
    except OSError as exc:
        raise UserError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _disk_errors(dest):
            yield tmp
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(dest: Path, text: str) -> None:
    """Write `text` (UTF-8) to `dest` atomically."""
    with atomic_output(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def previous_folder(dest: Path) -> Path:
    """Where `atomic_folder` parks the old `dest` during the swap (`NAME.old`).

    A kill between the two renames leaves the old folder there and no `dest`:
    a reader may fall back to it."""
    return dest.with_name(dest.name + ".old")


@contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield an empty temp folder next to `dest`; swap it in for `dest` on success."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    old = previous_folder(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _disk_errors(dest):
            tmp.mkdir(parents=True)
            yield tmp
            shutil.rmtree(old, ignore_errors=True)
            if dest.exists():
                os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
