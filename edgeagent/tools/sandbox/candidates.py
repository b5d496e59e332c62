"""Candidates: K copy-on-write forks of the session state, one snippet each.

`run_round` forks one child per snippet (each gets a pipe pair to this
process), gathers their results under one shared time limit (forwarding host
tool calls), sends them to the host, then waits for `commit {index}` or
`discard`. Committing hands the host channel to that child, which from then
on is the session (no re-run), and this process exits; the others are
killed, so they leave no trace. Forks inherit every layer of `confine`.

Not covered: running one snippet (`session`), the request loop (`worker`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import time
from dataclasses import dataclass
from typing import Any

from edgeagent.tools.sandbox import protocol
from edgeagent.tools.sandbox.session import Channel, Session

NOT_STARTED = (
    "OSError: this candidate could not start (too many processes or open files in the "
    "sandbox); earlier variables are kept."
)


@dataclass
class _Child:
    pid: int
    rfd: int
    wfd: int
    alive: bool = True


def _kill(child: _Child) -> None:
    if child.alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)
        child.alive = False
    for fd in (child.rfd, child.wfd):
        with contextlib.suppress(OSError):
            os.close(fd)
    child.rfd = child.wfd = -1


def _signal(child: _Child) -> None:
    if child.alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)


def _kill_all(children: list[_Child]) -> None:
    """SIGKILL them all first, then reap: the kernel tears them down in parallel."""
    for child in children:
        _signal(child)
    for child in children:
        _kill(child)


def run_round(session: Session, codes: list[str], timeout: float, grace: float) -> None:
    """Fork one child per snippet, gather results, then commit or discard.

    Returns in the committed child (which then serves the host) and in this
    process after a discard; this process exits after a commit."""
    children: list[_Child] = []
    gc.freeze()  # the forks' collector then leaves the shared pages alone
    for code in codes:
        try:
            c2w_r, c2w_w = os.pipe()
            w2c_r, w2c_w = os.pipe()
        except OSError:  # out of file descriptors: this candidate does not run
            children.append(_Child(-1, -1, -1, alive=False))
            continue
        try:
            pid = os.fork()
        except OSError:  # out of processes (RLIMIT_NPROC): this candidate does not run
            for fd in (c2w_r, c2w_w, w2c_r, w2c_w):
                os.close(fd)
            children.append(_Child(-1, -1, -1, alive=False))
            continue
        if pid == 0:
            for other in children:
                if other.alive:
                    os.close(other.rfd)
                    os.close(other.wfd)
            os.close(c2w_r)
            os.close(w2c_w)
            _candidate_child(session, Channel(w2c_r, c2w_w), code, timeout)
            return  # promoted: serve the host from here on
        os.close(c2w_w)
        os.close(w2c_r)
        children.append(_Child(pid, c2w_r, w2c_w))
    gc.unfreeze()
    results = _gather(session, children, timeout, grace)
    protocol.send(session.host.wfd, {"t": "results", "results": results})
    try:
        msg = protocol.recv(session.host.rfd, 1 << 30)
    except protocol.ProtocolError:
        _kill_all(children)
        os._exit(0)
    index = msg.get("index") if msg.get("t") == "commit" else None
    chosen = (
        children[index]
        if isinstance(index, int) and 0 <= index < len(children) and children[index].alive
        else None
    )
    if chosen is None:
        _kill_all(children)
        protocol.send(session.host.wfd, {"t": "discarded"})
        return
    for child in children:
        if child is not chosen:
            # no waitpid: this process exits next, and the keeper reaps them
            _signal(child)
    try:
        protocol.send(chosen.wfd, {"t": "promote"})
    except protocol.ProtocolError:
        _kill(chosen)
        protocol.send(session.host.wfd, {"t": "discarded"})
        return
    protocol.send(session.host.wfd, {"t": "committed", "pid": chosen.pid})
    os._exit(0)

def _candidate_child(session: Session, channel: Channel, code: str, timeout: float) -> None:
    gc.unfreeze()
    session.channel = channel
    try:
        result = session.execute(code, timeout)
        protocol.send(channel.wfd, result)
        verdict = protocol.recv(channel.rfd, 1 << 20)
    except BaseException:
        os._exit(0)
    if verdict.get("t") != "promote":
        os._exit(0)
    os.close(channel.rfd)
    os.close(channel.wfd)
    session.channel = session.host

def _gather(session: Session, children: list[_Child], timeout: float, grace: float) -> list[Any]:
    results: list[Any] = [
        None if c.alive else {"error": NOT_STARTED} for c in children
    ]
    bound = protocol.result_bound(session.max_output)
    deadline = time.monotonic() + timeout + grace
    waiting = {c.rfd: i for i, c in enumerate(children) if c.alive}
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(list(waiting), [], [], remaining)
        for fd in ready:
            i = waiting[fd]
            try:
                msg = protocol.recv(fd, bound, deadline)
            except protocol.ProtocolError:
                del waiting[fd]
                _kill(children[i])
                results[i] = {"error": "the candidate's interpreter crashed"}
                continue
            if msg.get("t") == "tool":
                started = time.monotonic()
                reply = _forward_tool(session, i, msg)
                deadline += time.monotonic() - started
                with contextlib.suppress(protocol.ProtocolError):
                    protocol.send(children[i].wfd, reply)
                continue
            del waiting[fd]
            results[i] = msg
    for fd, i in waiting.items():
        _kill(children[i])
        results[i] = {
            "error": f"TimeoutError: the code ran longer than {timeout:g} s and was stopped "
            "(this candidate was discarded; earlier variables are kept).",
            "timed_out": True,
        }
        del fd
    return results

def _forward_tool(session: Session, index: int, msg: dict[str, Any]) -> dict[str, Any]:
    protocol.send(
        session.host.wfd,
        {"t": "tool", "cand": index, "name": msg.get("name"), "arg": msg.get("arg")},
    )
    try:
        return protocol.recv(session.host.rfd, 1 << 30)
    except protocol.ProtocolError:
        os._exit(0)
