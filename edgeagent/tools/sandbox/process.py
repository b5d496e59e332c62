"""The worker process as the host sees it: how it is started, killed and cleaned up.

Covers the bootstrap command line (`python -I -S -B`, sys.path given
explicitly), `Worker` (a running process group and its pipe ends),
`WorkerLost` (a channel failure that means a restart), killing a group,
removing the temp directory, and the last line of the worker's stderr for
error messages.

Not covered: the requests themselves (`host`), the worker's side (`worker`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeagent.tools.sandbox import protocol

# Run with -I -S: no user site, no .pth processing (that alone costs ~40 ms);
# the package root and the directories of the worker's dependencies are put
# on sys.path explicitly.
BOOTSTRAP = (
    "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
    "from edgeagent.tools.sandbox.worker import main; main(sys.argv[2:])"
)
_ROOT = str(Path(__file__).resolve().parents[3])
_DEPENDENCIES = ("RestrictedPython", "numpy", "sympy", "mpmath")


@functools.lru_cache(maxsize=1)
def worker_path() -> str:
    """The sys.path entries the worker needs (JSON), found without importing."""
    paths = [_ROOT]
    for name in _DEPENDENCIES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin:
            where = str(Path(spec.origin).parent.parent)
            if where not in paths:
                paths.append(where)
    return json.dumps(paths)


class WorkerLost(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@contextlib.contextmanager
def lost_on_channel_errors() -> Iterator[None]:
    """Pipe failures while talking to the worker become `WorkerLost` (a restart)."""
    try:
        yield
    except protocol.ChannelTimeout:
        raise WorkerLost("timeout", timed_out=True) from None
    except protocol.ChannelClosed:
        raise WorkerLost("crashed") from None
    except protocol.ProtocolError as exc:
        raise WorkerLost(f"protocol: {exc}") from None


class Worker:
    """One running worker process group and its pipe ends."""

    def __init__(self, proc: subprocess.Popen[bytes], rfd: int, wfd: int) -> None:
        self.proc = proc
        self.rfd = rfd
        self.wfd = wfd
        self.pid = proc.pid

    def kill(self) -> None:
        _kill_group(self.proc, (self.rfd, self.wfd))


def _kill_group(proc: subprocess.Popen[bytes], fds: Sequence[int]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
        proc.wait(timeout=5)
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def cleanup(holder: dict[str, Any]) -> None:
    worker = holder.get("worker")
    if worker is not None:
        worker.kill()
        holder["worker"] = None
    workdir = holder.get("workdir")
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        holder["workdir"] = None


def stderr_tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read()[-limit:]
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else ""
