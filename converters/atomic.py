"""Write a file so that readers see either the old file or the whole new one.

`atomic_output(dest)` yields a temp path in the destination directory; when
the block succeeds the temp file is fsynced and `os.replace`d over `dest`;
when it fails (disk full, Ctrl+C, a bug) the temp file is removed and `dest`
is untouched. A full disk or a read-only directory becomes a one-line
`UserError`. Not covered: multi-file outputs (split GGUFs).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeagent.errors import UserError


@contextmanager
def atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a temp path next to `dest`; move it over `dest` on success."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"output directory {parent} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise UserError(f"cannot write to {parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"no space left on the device while writing {dest}; nothing was written"
            ) from None
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise UserError(f"cannot write {dest}: {exc.strerror}") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
