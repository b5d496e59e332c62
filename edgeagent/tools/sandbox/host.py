"""`CodeSandbox`: the host side of the code tool.

Starts the worker process (see `worker`), sends it snippets, answers its host
tool calls (`web_search`) from the callables it was given, enforces the hard
wall-clock limit by killing the worker's process group, and restarts the
worker lazily after a kill or crash. Every read from the worker is bounded in
size and time, so neither a print bomb nor a hostile worker can stall the host
or fill its memory.

`protections` holds the worker's report of its confinement layers (from its
`ready` frame). Starting, killing and cleaning up the process is `process`.

Not covered: what model code may do inside the worker (`policy`, `objects`,
`confine`). One `CodeSandbox` is not thread-safe; use one per agent session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from edgeagent.errors import UserError
from edgeagent.tools.sandbox import protocol
from edgeagent.tools.sandbox.limits import Limits, scrubbed_env
from edgeagent.tools.sandbox.process import (
    BOOTSTRAP,
    Worker,
    WorkerLost,
    cleanup,
    lost_on_channel_errors,
    stderr_tail,
    worker_path,
)
from edgeagent.tools.sandbox.result import ExecResult

Tool = Callable[[str], str]

_RESERVED = frozenset({"final_answer", "print", "printed"})
LOST_STATE = "variables, imports and functions from earlier steps were lost"


class CodeSandbox:
    """A Python interpreter session for model code. See the package docstring."""

    def __init__(
        self,
        tools: Mapping[str, Tool] | None = None,
        timeout_s: float = 10.0,
        *,
        memory_mb: int = 1024,
        max_output_chars: int = 20_000,
        max_code_chars: int = 100_000,
        kill_grace_s: float = 0.5,
        start_timeout_s: float = 30.0,
        preload: Sequence[str] = (),
        python: str | None = None,
    ) -> None:
        self._layers = {"python_layer": True, "os_layer": True}
        self._tools: dict[str, Tool] = {}
        for name, fn in (tools or {}).items():
            if not (isinstance(name, str) and name.isidentifier()) or name.startswith("_"):
                raise UserError(f"sandbox tool name {name!r} is not a public identifier")
            if name in _RESERVED:
                raise UserError(f"sandbox tool name {name!r} is reserved")
            if not callable(fn):
                raise UserError(f"sandbox tool {name!r} is not callable")
            self._tools[name] = fn
        if not timeout_s > 0:
            raise UserError("sandbox timeout must be positive")
        if memory_mb < 256:
            raise UserError("sandbox memory limit must be at least 256 MiB")
        if max_output_chars < 100:
            raise UserError("sandbox output cap must be at least 100 characters")
        from edgeagent.tools.sandbox.names import module_allowed

        for name in preload:
            if not module_allowed(name):
                raise UserError(f"cannot preload {name!r}: not an allowed module")
        self.timeout_s = float(timeout_s)
        self.kill_grace_s = float(kill_grace_s)
        self.start_timeout_s = float(start_timeout_s)
        self.max_output_chars = int(max_output_chars)
        self.max_code_chars = int(max_code_chars)
        self.limits = Limits(memory_mb=int(memory_mb))
        self.preload = tuple(preload)
        self.python = python or sys.executable
        self._holder: dict[str, Any] = {"worker": None, "workdir": None}
        self._finalizer = weakref.finalize(self, cleanup, self._holder)
        self._round: list[int | None] | None = None  # candidates awaiting commit
        self._closed = False
        self.restarts = 0
        self.worker_pid: int | None = None
        self.last_start_ms: float | None = None
        self.protections: dict[str, Any] = {}  # the worker's last `ready` report

    # ---- lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _worker(self) -> Worker | None:
        worker: Worker | None = self._holder["worker"]
        return worker

    @property
    def alive(self) -> bool:
        """Whether a worker is running (it starts on demand otherwise)."""
        return self._worker is not None

    def start(self) -> None:
        """Start the worker now (otherwise the first call starts it)."""
        if self._closed:
            raise RuntimeError("this CodeSandbox is closed")
        if self._worker is None:
            self._spawn()

    def close(self) -> None:
        """Kill the worker's process group and remove its temp directory."""
        self._closed = True
        self._round = None
        cleanup(self._holder)

    def reset(self) -> None:
        """Drop all state: the next call runs in a fresh interpreter."""
        self._round = None
        self._drop_worker()

    def _spawn(self) -> None:
        started = time.perf_counter()
        workdir = self._holder["workdir"]
        if workdir is None or not os.path.isdir(workdir):
            workdir = self._holder["workdir"] = tempfile.mkdtemp(prefix="edgeagent-sandbox-")
        h2w_r, h2w_w = os.pipe()
        w2h_r, w2h_w = os.pipe()
        config = json.dumps(
            {
                "tools": sorted(self._tools),
                "limits": self.limits.as_dict(),
                "max_output_chars": self.max_output_chars,
                "preload": list(self.preload),
                **self._layers,
            }
        )
        stderr_path = os.path.join(workdir, "worker-stderr.log")
        try:
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [self.python, "-I", "-S", "-B", "-c", BOOTSTRAP, worker_path(),
                     str(h2w_r), str(w2h_w), config],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=workdir,
                    env=scrubbed_env(workdir),
                    pass_fds=(h2w_r, w2h_w),
                    start_new_session=True,
                )
        except OSError as exc:
            for fd in (h2w_r, h2w_w, w2h_r, w2h_w):
                os.close(fd)
            raise UserError(f"cannot start the Python sandbox ({self.python}): {exc}") from None
        os.close(h2w_r)
        os.close(w2h_w)
        os.set_blocking(w2h_r, False)
        os.set_blocking(h2w_w, False)
        worker = Worker(proc, w2h_r, h2w_w)
        try:
            msg = protocol.recv(
                w2h_r, 4096, time.monotonic() + self.start_timeout_s + len(self.preload) * 10
            )
            if msg.get("t") != "ready":
                raise protocol.ProtocolError(f"unexpected first message {msg.get('t')!r}")
        except protocol.ProtocolError as exc:
            worker.kill()
            detail = stderr_tail(stderr_path) or str(exc)
            raise UserError(f"the Python sandbox did not start: {detail}") from None
        self._holder["worker"] = worker
        self.worker_pid = int(msg.get("pid", proc.pid))
        self.last_start_ms = (time.perf_counter() - started) * 1000
        layers = msg.get("layers")
        self.protections = {
            "layers": layers if isinstance(layers, dict) else {},
            "confine_ms": msg.get("confine_ms"),
            "worker_ready_ms": msg.get("worker_ready_ms"),
        }

    def _drop_worker(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.kill()
            self._holder["worker"] = None
            self.worker_pid = None

    # ---- calls

    def run(self, code: str) -> ExecResult:
        """Run one snippet in the session's state. Never raises for bad code."""
        started = time.perf_counter()
        early = self._precheck(code)
        if early is not None:
            return early
        if self._round is not None:
            self.discard()
        worker = self._ensure()
        try:
            self._send(worker, {"t": "run", "code": code, "timeout": self.timeout_s})
            msg = self._await(worker, "result", self.timeout_s + self.kill_grace_s,
                              protocol.result_bound(self.max_output_chars))
        except WorkerLost as lost:
            return self._lost(lost, started)
        return ExecResult.from_wire(msg)

    def run_candidates(self, codes: Sequence[str]) -> list[ExecResult]:
        """Run each snippet in its own copy of the current state (a fork).

        The state is unchanged until `commit(i)`; `discard()`, or any other
        call, drops them all. All candidates share one time limit (they run
        in parallel)."""
        started = time.perf_counter()
        if self._round is not None:
            self.discard()
        results: list[ExecResult | None] = [self._precheck(c) for c in codes]
        to_send = [c for c, r in zip(codes, results, strict=True) if r is None]
        if not to_send:
            return [r for r in results if r is not None]
        worker = self._ensure()
        grace = self.kill_grace_s
        try:
            self._send(
                worker, {"t": "cands", "codes": to_send, "timeout": self.timeout_s, "grace": grace}
            )
            msg = self._await(
                worker, "results", self.timeout_s + 2 * grace + 0.05 * len(to_send) + 0.5,
                len(to_send) * protocol.result_bound(self.max_output_chars) + 4096,
            )
            wire = msg.get("results")
            if not isinstance(wire, list) or len(wire) != len(to_send):
                raise WorkerLost("the interpreter sent a malformed candidates reply")
        except WorkerLost as lost:
            failed = self._lost(lost, started)
            return [r if r is not None else failed for r in results]
        mapping: list[int | None] = []
        k = 0
        out: list[ExecResult] = []
        for r in results:
            if r is None:
                item = wire[k]
                out.append(ExecResult.from_wire(item if isinstance(item, dict) else {}))
                mapping.append(k)
                k += 1
            else:
                out.append(r)
                mapping.append(None)
        self._round = mapping
        return out

    def commit(self, index: int) -> bool:
        """Make candidate `index` of the last `run_candidates` the session state.

        Returns False when that candidate has no state to keep (it was killed
        for time, or rejected before running): the state then stays as it was
        before the candidates, as after `discard()`."""
        if self._round is None:
            raise RuntimeError("commit() without pending candidates")
        if not 0 <= index < len(self._round):
            raise IndexError(f"candidate index {index} out of range")
        target = self._round[index]
        self._round = None
        return self._finish({"t": "commit", "index": target if target is not None else -1})

    def discard(self) -> None:
        """Drop every pending candidate; the state stays as before them."""
        if self._round is None:
            return
        self._round = None
        self._finish({"t": "discard"})

    def _finish(self, request: dict[str, Any]) -> bool:
        worker = self._worker
        if worker is None:
            return False
        try:
            self._send(worker, request)
            msg = self._await(worker, ("committed", "discarded"), 5.0, 4096)
        except WorkerLost:
            self._drop_worker()
            self.restarts += 1
            return False
        if msg.get("t") == "committed":
            self.worker_pid = int(msg.get("pid", 0)) or None
            return True
        return False

    # ---- plumbing

    def _precheck(self, code: object) -> ExecResult | None:
        if self._closed:
            raise RuntimeError("this CodeSandbox is closed")
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        if len(code) > self.max_code_chars:
            return ExecResult(
                error=f"The code is too long ({len(code)} characters; the limit is "
                f"{self.max_code_chars})."
            )
        return None

    def _ensure(self) -> Worker:
        if self._worker is None:
            self.start()
        worker = self._worker
        assert worker is not None
        return worker

    @staticmethod
    def _send(worker: Worker, request: dict[str, Any]) -> None:
        """A request to the worker; a worker that died before reading it is `WorkerLost`
        (the write can hit the closed pipe before the death is noticed anywhere else)."""
        with lost_on_channel_errors():
            protocol.send(worker.wfd, request, time.monotonic() + 5)

    def _await(
        self, worker: Worker, kinds: str | tuple[str, ...], budget_s: float, bound: int
    ) -> dict[str, Any]:
        deadline = time.monotonic() + budget_s
        with lost_on_channel_errors():
            while True:
                msg = protocol.recv(worker.rfd, bound, deadline)
                kind = msg.get("t")
                if kind == "tool":
                    spent = self._answer_tool(worker, msg)
                    deadline += spent
                    continue
                if kind == kinds or (isinstance(kinds, tuple) and kind in kinds):
                    return msg
                raise protocol.ProtocolError(f"unexpected message {kind!r}")

    def _answer_tool(self, worker: Worker, msg: dict[str, Any]) -> float:
        started = time.monotonic()
        name, arg = msg.get("name"), msg.get("arg")
        fn = self._tools.get(name) if isinstance(name, str) else None
        if fn is None or not isinstance(arg, str):
            reply: dict[str, Any] = {"ok": False, "value": f"unknown tool {name!r}"}
        else:
            try:
                reply = {"ok": True, "value": str(fn(arg))[: 50 * self.max_output_chars]}
            except Exception as exc:  # a failing tool is the model's observation
                reply = {"ok": False, "value": f"{type(exc).__name__}: {exc}"}
        reply["t"] = "tool_result"
        protocol.send(worker.wfd, reply, time.monotonic() + 5)
        return time.monotonic() - started

    def _lost(self, lost: WorkerLost, started: float) -> ExecResult:
        self._drop_worker()
        self._round = None
        self.restarts += 1
        if lost.timed_out:
            error = (
                f"TimeoutError: the code ran longer than {self.timeout_s:g} s and was killed. "
                f"The Python interpreter was restarted: {LOST_STATE}."
            )
        elif str(lost) == "crashed":
            error = (
                "The Python interpreter stopped unexpectedly (out of memory or CPU time?) and "
                f"was restarted: {LOST_STATE}."
            )
        else:
            error = (
                f"The Python interpreter misbehaved ({lost}) and was restarted: {LOST_STATE}."
            )
        return ExecResult(
            error=error,
            timed_out=lost.timed_out,
            restarted=True,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
