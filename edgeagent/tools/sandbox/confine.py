"""The OS layer: the worker confines itself, once and for good, before any model code.

`confine` runs in the worker child right after the keeper forked off and
before anything can start a thread. In order, each step detecting whether
the kernel offers it and recording why not when it does not:

1. Namespaces: a fresh network namespace (no interface but a downed
   loopback, so no network at all); as a normal user inside a new user
   namespace (unprivileged user namespaces are off on stock Ubuntu 24.04),
   as root directly.
2. Started as root: drop to a uid of its own (2e9 + its pid, unique among
   live sandboxes, owned by no one), keeping only CAP_DAC_READ_SEARCH
   (Python may live under /root; Landlock, not file modes, then decides
   what is readable), so that RLIMIT_NPROC binds (the kernel never applies
   it to uid 0) and counts this sandbox alone, and neither the host's
   processes nor other sandboxes can be signalled.
3. RLIMIT_NPROC: the processes the uid has now plus `nproc`, so a fork bomb
   stops there (`limits` already set AS, CPU, FSIZE=0, CORE=0, NOFILE).
4. no_new_privs (again; `limits` set it first), then Landlock
   (`landlock`: reads only where Python and its packages live, writes only
   in the worker's temp dir, no exec, no TCP, signals scoped), then seccomp
   (`seccomp`: no exec, sockets, ptrace, namespaces, ...).

Fork policy: processes may fork (candidates are forks of the warm worker);
every child inherits every layer, exec is refused, and RLIMIT_NPROC bounds
the count. The report (`ready.protections` on the wire) is what
`edgeagent.tools.sandbox.protections()` returns.

Not covered: the Python layer (`policy`, `objects`); the host's group kill
and hard timeout (`host`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys
import time
from typing import Any

from edgeagent.tools.sandbox import landlock, seccomp

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 8, 38, 39
CAP_DAC_READ_SEARCH = 2
UID_BASE = 2_000_000_000
SYSTEM_READ = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache",
               "/etc/localtime", "/usr/share/zoneinfo", "/dev/null", "/dev/urandom")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def read_paths() -> list[str]:
    """Where this interpreter, its standard library and its packages live.

    A source checkout on sys.path (edgeagent run from its repository) gives
    only its `edgeagent` package, not the whole checkout."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    checkout = os.path.dirname(package)
    found: list[str] = []
    candidates = [*sys.path, sys.prefix, sys.base_prefix, sys.exec_prefix,
                  sys.base_exec_prefix, *SYSTEM_READ]
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        if real == os.path.realpath(checkout) and os.path.basename(real) not in (
            "site-packages", "dist-packages"
        ):
            real = os.path.realpath(package)
        if real not in found and real != "/":
            found.append(real)
    return found


def _namespaces() -> tuple[bool, str, bool]:
    """(active, detail, in a new user namespace)."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        _check(libc.unshare(CLONE_NEWNET), "unshare(network)")
        return True, "network namespace (no network)", False
    try:
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(user, network)")
    except OSError as exc:
        return False, f"unprivileged user namespaces unavailable ({exc.strerror})", False
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    return True, "user + network namespace (no network)", True


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _drop_root(workdir: str) -> str:
    """A uid/gid of this sandbox's own, keeping only CAP_DAC_READ_SEARCH."""
    libc = _libc()
    with open("/proc/self/status") as fh:
        permitted = next(
            int(line.split()[1], 16) for line in fh if line.startswith("CapPrm:")
        )
    if not permitted & (1 << CAP_DAC_READ_SEARCH):  # e.g. a default Docker container
        raise OSError("root without CAP_DAC_READ_SEARCH: staying uid 0")
    uid = UID_BASE + os.getpid()
    os.chown(workdir, uid, uid)
    _check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(KEEPCAPS)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    _check(libc.capset(ctypes.byref(header), data), "capset")
    return f"uid {uid} (this sandbox's own) with only CAP_DAC_READ_SEARCH (started as root)"


def tasks_of(uid: int) -> int:
    """Processes and threads the kernel counts against `uid`'s RLIMIT_NPROC
    (a /proc directory belongs to its process's effective uid)."""
    count = 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue  # it exited meanwhile
    return count


def _set_nproc(margin: int, own_userns: bool) -> str:
    base = 1 if own_userns else tasks_of(os.getuid())
    limit = base + margin
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    return f"NPROC={limit} ({base} existing + {margin})"


def _layer(report: dict[str, dict[str, Any]], name: str, step: Any) -> Any:
    try:
        detail = step()
    except (OSError, AttributeError, ValueError) as exc:
        report[name] = {"active": False, "detail": str(exc) or type(exc).__name__}
        return None
    report[name] = {"active": True, "detail": detail}
    return detail


def confine(
    *, workdir: str, host_pid: int, keeper_pid: int, nproc: int, enabled: bool = True
) -> dict[str, Any]:
    """Apply every available layer to this process; return the report."""
    started = time.perf_counter()
    layers: dict[str, dict[str, Any]] = {}
    if not enabled:
        for name in ("namespaces", "rlimits", "no_new_privs", "landlock", "seccomp"):
            layers[name] = {"active": False, "detail": "disabled for this sandbox"}
        return {"layers": layers, "confine_ms": 0.0}
    paths = read_paths()  # before any namespace or uid change
    with contextlib.suppress(OSError):
        seccomp.library()  # loaded while the library directories are still readable
    own_userns = False
    try:
        active, detail, own_userns = _namespaces()
        layers["namespaces"] = {"active": active, "detail": detail}
    except (OSError, AttributeError, ValueError) as exc:
        layers["namespaces"] = {"active": False, "detail": str(exc)}
    if os.geteuid() == 0:
        _layer(layers, "uid", lambda: _drop_root(workdir))
    rlimits = "AS, CPU, FSIZE=0, CORE=0, NOFILE"
    if os.getuid() == 0:
        layers["rlimits"] = {"active": True, "detail": rlimits + "; NPROC does not bind uid 0"}
    else:
        _layer(layers, "rlimits", lambda: f"{rlimits}, {_set_nproc(nproc, own_userns)}")

    def nnp() -> str:
        libc = _libc()
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        if libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
            raise OSError("no_new_privs did not stick")
        return "set"

    _layer(layers, "no_new_privs", nnp)
    abi = landlock.abi_version()
    if abi == 0:
        layers["landlock"] = {"active": False, "detail": "the kernel has no Landlock (5.13+)"}
    else:
        _layer(layers, "landlock",
               lambda: f"ABI {abi}: " + ", ".join(landlock.restrict(paths, [workdir], abi)))

    def filter_() -> str:
        seccomp.install(host_pid, keeper_pid)
        return "exec, sockets, ptrace, namespaces, mounts, bpf, io_uring, keyctl refused"

    _layer(layers, "seccomp", filter_)
    return {"layers": layers, "confine_ms": round((time.perf_counter() - started) * 1000, 3)}
