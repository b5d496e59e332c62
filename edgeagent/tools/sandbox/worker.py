"""The worker process: confines itself, then serves requests for one session.

Started by the host as `python -I -S -B -c <bootstrap> <paths> <rfd> <wfd>
<config>`. It applies its limits (`limits`), forks once so that a tiny
*keeper* (a child subreaper that only reaps and exits with its last
descendant, or kills the group if the host disappears) stays behind outside
the sandbox, and the child confines itself for good (`confine`: namespaces,
rlimits, Landlock, seccomp) before it builds the session, then serves
requests over the inherited pipes: one JSON frame in, frames out
(`protocol`).

Requests: `run {code, timeout}` -> `result`; `cands {codes, timeout}` ->
`results`, then `commit {index}` -> `committed` or `discard` -> `discarded`
(`candidates`); `ping` -> `pong`. The first frame out is `ready {pid,
protections}`: which confinement layers are active, with a reason for each
inactive one.

Not covered: running a snippet (`session`), the guards (`policy`, `objects`).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from edgeagent.tools.sandbox import protocol
from edgeagent.tools.sandbox.candidates import run_round
from edgeagent.tools.sandbox.confine import confine
from edgeagent.tools.sandbox.limits import Limits, apply_limits, set_subreaper
from edgeagent.tools.sandbox.modules import real_import
from edgeagent.tools.sandbox.session import Channel, Session


def serve(session: Session, ready: dict[str, Any]) -> None:
    """Answer the host's requests until it closes the channel."""
    host = session.host
    protocol.send(host.wfd, {"t": "ready", "pid": os.getpid(), **ready})
    while True:
        try:
            msg = protocol.recv(host.rfd, 1 << 30)
        except protocol.ProtocolError:
            os._exit(0)
        kind = msg.get("t")
        if kind == "run":
            reply = session.execute(str(msg.get("code", "")), float(msg.get("timeout", 10)))
            protocol.send(host.wfd, reply)
        elif kind == "cands":
            run_round(
                session,
                [str(c) for c in msg.get("codes", [])],
                float(msg.get("timeout", 10)),
                float(msg.get("grace", 0.5)),
            )
            host = session.host  # a committed candidate serves from here on
        elif kind == "ping":
            protocol.send(host.wfd, {"t": "pong", "pid": os.getpid()})
        elif kind in ("commit", "discard"):
            protocol.send(host.wfd, {"t": "discarded"})
        else:
            os._exit(0)


def _keeper(host_pid: int) -> None:
    """Reap descendants; exit with the last; kill the group if the host is gone."""
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            os._exit(0)
        if os.getppid() != host_pid:
            os.killpg(0, signal.SIGKILL)
        time.sleep(0.2)


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    rfd, wfd = int(argv[0]), int(argv[1])
    config = json.loads(argv[2])
    limits = Limits(**config["limits"])
    apply_limits(limits)
    host_pid = os.getppid()
    keeper_pid = os.getpid()
    set_subreaper()
    if os.fork() != 0:
        os.close(rfd)
        os.close(wfd)
        _keeper(host_pid)
    report = confine(
        workdir=os.getcwd(), host_pid=host_pid, keeper_pid=keeper_pid,
        nproc=limits.nproc, enabled=bool(config.get("os_layer", True)),
    )
    session = Session(
        Channel(rfd, wfd), list(config["tools"]), int(config["max_output_chars"]),
        limits.memory_mb, python_layer=bool(config.get("python_layer", True)),
    )
    for name in config.get("preload", []):
        real_import(name)
    report["worker_ready_ms"] = round((time.perf_counter() - started) * 1000, 3)
    serve(session, report)
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
