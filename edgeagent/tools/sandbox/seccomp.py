"""A seccomp filter built with libseccomp through ctypes (no compiled dependency).

`install(host_pid, keeper_pid)` loads a filter for the calling process and
everything it forks, for good. Default: allow. Refused with EPERM: running
programs (`execve`, `execveat`), every socket (`socket`, `socketpair`: the
worker talks to the host over inherited pipes), debugging and reading other
processes (`ptrace`, `process_vm_*`, `pidfd_*`, `kcmp`), namespaces and
mounts (`unshare`, `setns`, `mount`, clone with a namespace flag, ...),
leaving the process group (`setsid`, `setpgid`), kernel attack surface
(`bpf`, `io_uring_*`, `keyctl`, `userfaultfd`, `perf_event_open`, module
and kexec calls, `open_by_handle_at`, ...), signals to a process group,
to every process (-1), to the keeper or to the host, and changing another
process's limits, affinity or priority. `clone3` fails with
ENOSYS so that libc falls back to `clone`, whose flags the filter can read
(EPERM there would break `pthread_create`). A system call from another
architecture (32-bit `int 0x80`, x32) kills the process.

Processes may fork: candidates are forks of the worker. Children inherit the
filter (and exec stays refused); `confine` bounds their number. Signals to
other processes of the same uid are refused by Landlock's scope (ABI 6+) or,
when started as root, by the sandbox's own uid; on an older kernel run as a
normal user this filter covers only the host, the keeper and groups.

Not covered: files (`landlock`), namespaces and rlimits (`confine`).
"""

from __future__ import annotations

import ctypes
import errno
import os

ACT_ALLOW = 0x7FFF0000
ACT_KILL_PROCESS = 0x80000000
ATTR_BADARCH, ATTR_CTL_NNP, ATTR_CTL_TSYNC = 2, 3, 4
CMP_NE, CMP_MASKED_EQ = 1, 7

DENIED = (
    "execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv",
    "process_vm_writev", "process_madvise", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "kcmp", "mount", "umount2", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "pivot_root", "chroot", "unshare", "setns", "setsid", "setpgid",
    "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl", "add_key",
    "request_key", "userfaultfd", "perf_event_open", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "open_by_handle_at",
    "name_to_handle_at", "fanotify_init", "acct", "swapon", "swapoff", "reboot", "syslog",
    "quotactl", "personality", "lookup_dcookie", "vhangup", "iopl", "ioperm",
)
SIGNALLING = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# Calls that act on another process (same uid: the host) when a pid is given;
# (name, index of the pid argument). With 0 they act on the caller.
OTHER_PROCESS = (("prlimit64", 0), ("sched_setaffinity", 0), ("sched_setscheduler", 0),
                 ("sched_setparam", 0), ("sched_setattr", 0), ("setpriority", 1),
                 ("ioprio_set", 1))
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000, 0x00000080)


_loaded: list[ctypes.CDLL] = []


class SeccompError(OSError):
    """libseccomp is missing or refused the filter."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def library() -> ctypes.CDLL:
    """libseccomp, or SeccompError saying it is not installed."""
    if _loaded:
        return _loaded[0]
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        from ctypes.util import find_library  # slow (imports subprocess): fallback only

        name = find_library("seccomp")  # runs ldconfig: before confinement only
        try:
            lib = ctypes.CDLL(name or "libseccomp.so", use_errno=True)
        except OSError as exc:
            raise SeccompError(errno.ENOENT, f"libseccomp not found ({exc})") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    _loaded.append(lib)
    return lib


def _build(lib: ctypes.CDLL, host_pid: int, keeper_pid: int) -> int:
    ctx = lib.seccomp_init(ACT_ALLOW)
    if not ctx:
        raise SeccompError(errno.EINVAL, "seccomp_init failed")

    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a system call on this architecture
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
        if rc < 0:
            raise SeccompError(-rc, f"seccomp rule for {name}: {os.strerror(-rc)}")

    try:
        for attr, value in ((ATTR_BADARCH, ACT_KILL_PROCESS), (ATTR_CTL_TSYNC, 1)):
            rc = lib.seccomp_attr_set(ctx, attr, value)
            if rc < 0:
                raise SeccompError(-rc, f"seccomp attribute {attr}: {os.strerror(-rc)}")
        eperm = _errno_action(errno.EPERM)
        for name in DENIED:
            rule(eperm, name)
        rule(_errno_action(errno.ENOSYS), "clone3")
        for flag in NAMESPACE_FLAGS:
            rule(eperm, "clone", (0, CMP_MASKED_EQ, flag, flag))
        for name, index in OTHER_PROCESS:
            rule(eperm, name, (index, CMP_NE, 0, 0))
        low = 0xFFFFFFFF
        for name in SIGNALLING:
            rule(eperm, name, (0, CMP_MASKED_EQ, 0x80000000, 0x80000000))  # pid < 0
            for pid in (0, host_pid, keeper_pid):
                rule(eperm, name, (0, CMP_MASKED_EQ, low, pid))
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return int(ctx)


def install(host_pid: int, keeper_pid: int) -> None:
    """Load the filter (no_new_privs must already be set)."""
    lib = library()
    ctx = _build(lib, host_pid, keeper_pid)
    try:
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise SeccompError(-rc, f"seccomp_load: {os.strerror(-rc)}")
    finally:
        lib.seccomp_release(ctx)


def export_bpf(host_pid: int = 1, keeper_pid: int = 1) -> bytes:
    """The BPF program `install` would load (for tests and `doctor`)."""
    lib = library()
    ctx = _build(lib, host_pid, keeper_pid)
    read_fd, write_fd = os.pipe()
    try:
        rc = lib.seccomp_export_bpf(ctx, write_fd)
        os.close(write_fd)
        write_fd = -1
        if rc < 0:
            raise SeccompError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        lib.seccomp_release(ctx)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
