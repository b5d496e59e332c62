"""Landlock through its three system calls (ctypes, no compiled dependency).

`restrict(read, write)` confines the calling thread (and every thread and
process it starts afterwards) for good: files may be read only beneath the
`read` paths, created, written, renamed or removed only beneath the `write`
paths, and nothing may be executed anywhere (C extensions still load: mmap
is not execve). Depending on the kernel's Landlock ABI it also denies every
TCP bind/connect (ABI 4), and scopes abstract UNIX sockets and signals to
the sandbox (ABI 6): a confined process cannot signal its keeper or the
host. Each right is requested only where the running kernel knows it
(Ubuntu 22.04 has ABI 1, Debian 12 ABI 2, Ubuntu 24.04 ABI 4).

Without TSYNC (ABI 8+) only the calling thread and its later children are
confined, so the worker calls this before anything starts a thread.
`no_new_privs` must already be set.

Not covered: which paths to allow (`confine`), system calls (`seccomp`).
"""

from __future__ import annotations

import ctypes
import os

# x86_64 and aarch64 (and every architecture using the generic table) agree.
_SYS = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


class LandlockError(OSError):
    """The kernel refused a Landlock call (the message says which)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _syscall(name: str, *args: object) -> int:
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(ctypes.c_long(_SYS[name]), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock_{name}: {os.strerror(err)}")
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when it has none (or it is disabled)."""
    uname = os.uname()
    if uname.sysname != "Linux" or uname.machine not in ("x86_64", "aarch64"):
        return 0
    try:
        return _syscall("create_ruleset", None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (LandlockError, OSError, AttributeError):
        return 0


def fs_rights(abi: int) -> int:
    """Every filesystem right the kernel's ABI knows."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(read: list[str], write: list[str], abi: int) -> list[str]:
    """Confine this thread and its future children; returns what was enforced."""
    handled = fs_rights(abi)
    attr = _RulesetAttr(fs=handled)
    size = 8
    enforced = ["filesystem"]
    if abi >= 4:
        attr.net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
        enforced.append("tcp bind/connect")
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
        enforced.append("signal and abstract-socket scope")
    ruleset = _syscall("create_ruleset", ctypes.byref(attr), ctypes.c_size_t(size),
                       ctypes.c_uint32(0))
    try:
        reading = READ_FILE | READ_DIR
        writing = (reading | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG
                   | (REFER | TRUNCATE)) & handled
        for paths, rights in ((read, reading), (write, writing)):
            for path in paths:
                _add_path(ruleset, path, rights)
        _syscall("restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return enforced


def _add_path(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path that is not there needs no rule
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneath(allowed=rights, parent_fd=fd)
        _syscall("add_rule", ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                 ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
