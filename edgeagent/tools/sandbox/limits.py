"""Process limits of the worker: the wall around model code.

Covers the scrubbed environment the host starts the worker with, and what the
worker applies to itself before it reads any code: RLIMIT_AS (memory),
RLIMIT_CPU (a session budget; the worker lowers the soft limit per call),
RLIMIT_FSIZE 0 (no file can grow; SIGXFSZ ignored so a write fails instead of
killing), RLIMIT_NOFILE (small), RLIMIT_CORE 0, PR_SET_NO_NEW_PRIVS, and
PR_SET_CHILD_SUBREAPER for the keeper process (Linux; silently skipped where
prctl is missing). The worker also runs in its own session (process group),
in a private temp directory, with stdin on /dev/null; the host kills the whole
group on a hard timeout.

RLIMIT_NPROC is set later, by `confine`, once the worker knows which uid
it runs as.

Not covered: namespaces, Landlock, seccomp (`confine`).
"""

from __future__ import annotations

import ctypes
import resource
import signal
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# Pinned to one thread: predictable timing, and no BLAS thread pool to
# break fork() (candidates fork the worker).
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 1024
    cpu_budget_s: int = 3600
    nofile: int = 64
    nproc: int = 64  # processes the worker may add (candidates, model forks)

    def as_dict(self) -> dict[str, int]:
        return {"memory_mb": self.memory_mb, "cpu_budget_s": self.cpu_budget_s,
                "nofile": self.nofile, "nproc": self.nproc}


def scrubbed_env(workdir: str) -> dict[str, str]:
    """The worker's whole environment: nothing inherited from the host."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
    }
    env.update({name: "1" for name in THREAD_VARS})
    return env


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program: libc's symbols
        return bool(libc.prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def set_subreaper() -> bool:
    """Orphaned descendants (committed candidates) are re-parented to us."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _set(kind: int, soft: int, hard: int) -> None:
    try:
        _cur_soft, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):  # pragma: no cover - platform without that limit
        pass


def apply_limits(limits: Limits) -> None:
    """Applied by the worker to itself at start (inherited by its forks)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    memory = limits.memory_mb * 1024 * 1024
    _set(resource.RLIMIT_AS, memory, memory)
    _set(resource.RLIMIT_CPU, limits.cpu_budget_s, limits.cpu_budget_s + 5)
    _set(resource.RLIMIT_FSIZE, 0, 0)
    _set(resource.RLIMIT_CORE, 0, 0)
    _set(resource.RLIMIT_NOFILE, limits.nofile, limits.nofile)


def cpu_seconds_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def limit_cpu_for_call(timeout_s: float) -> None:
    """Lower the soft CPU limit to what this call may use (SIGXCPU past it)."""
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(cpu_seconds_used() + timeout_s + 2)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):  # pragma: no cover
        pass
