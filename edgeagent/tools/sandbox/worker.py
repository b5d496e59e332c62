"""The worker process: runs model code, keeps session state, forks candidates.

Started by the host as `python -I -B -c <bootstrap> <rfd> <wfd> <config>`; it
applies its limits (see `limits`), forks once so that a tiny *keeper* (a child
subreaper that only reaps and exits with its last descendant, or kills the
group if the host disappears) stays behind, and the child serves requests over
the pipe: one JSON frame in, frames out (`protocol`).

Requests: `run {code, timeout}` -> `result`; `cands {codes, timeout}` ->
`results`, then `commit {index}` -> `committed` or `discard` -> `discarded`;
`ping` -> `pong`. While code runs, a `tool {name, arg}` frame asks the host to
run a host tool and waits for `tool_result {ok, value}`.

Timeouts have two layers. The soft one is SIGALRM at `timeout`: it raises
`SnippetTimeout` (a BaseException) inside model code, paused while a host tool
runs or an allowlisted module imports, so state survives. The hard one is the
host's: past `timeout + grace` it kills the process group. Candidates are
children forked from this process (copy-on-write copies of the state); the
chosen one takes over the host channel and this process exits; the others are
killed, so they leave no trace.

Not covered: the guards themselves (`policy`, `modules`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import sys
import time
import types
from dataclasses import dataclass
from typing import Any

from edgeagent.tools.sandbox import protocol
from edgeagent.tools.sandbox.limits import Limits, apply_limits, limit_cpu_for_call, set_subreaper
from edgeagent.tools.sandbox.modules import make_importer, real_import
from edgeagent.tools.sandbox.policy import (
    LAST_VALUE,
    NO_VALUE,
    PrintCollector,
    compile_snippet,
    make_builtins,
    make_globals,
)

NO_WEB_SEARCH = (
    "web_search is not available: no Wikipedia index is loaded. Build one with "
    "`edgeagent wiki build`, or answer from what you know."
)
MAX_TOOL_ARG = 10_000
MAX_ERROR = protocol.MAX_ERROR


class SnippetTimeout(BaseException):
    """Raised inside model code when its soft time limit passes."""


class FinalAnswerSignal(BaseException):
    """Raised by `final_answer(x)` to end the snippet."""


class ToolError(Exception):
    """A host tool failed; model code sees this exception."""


def clean(text: str, limit: int) -> str:
    """Cap `text` and replace lone surrogates so it encodes as UTF-8."""
    if len(text) > limit:
        text = text[:limit] + f"... [truncated, {len(text) - limit} more characters]"
    return text.encode("utf-8", "replace").decode("utf-8")


def safe_repr(value: Any, limit: int, convert: Any = repr) -> str:
    """`repr(value)` (or `convert(value)`, e.g. `str`) capped, never raising."""
    try:
        text = convert(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}: {exc}>"
    if not isinstance(text, str):  # pragma: no cover - repr always returns str
        text = "<unrepresentable>"
    return clean(text, limit)


def _plain(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON types, or NO_VALUE."""
    if depth > 20:
        return NO_VALUE
    if value is None or isinstance(value, bool):
        return value if value is None else bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value).encode("utf-8", "replace").decode("utf-8")
    module = getattr(type(value), "__module__", "") or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist") and getattr(value, "size", 0) <= 10_000:
            return _plain(value.tolist(), depth + 1)
        return NO_VALUE
    if isinstance(value, (list, tuple)):
        items = [_plain(v, depth + 1) for v in value]
        return NO_VALUE if any(v is NO_VALUE for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = {str(k): _plain(v, depth + 1) for k, v in value.items()}
        return NO_VALUE if any(v is NO_VALUE for v in out.values()) else out
    return NO_VALUE


def to_wire(value: Any, limit: int) -> Any:
    """A final answer for the host: the value if JSON-able and small, else its repr."""
    try:
        plain = _plain(value)
        if plain is not NO_VALUE and len(json.dumps(plain, allow_nan=False)) <= limit:
            return plain
    except (ValueError, TypeError, RecursionError, OverflowError):
        pass
    return safe_repr(value, limit)


class _Clock:
    """The soft time limit: SIGALRM raises only while model code runs."""

    def __init__(self) -> None:
        self.guarded = False
        self.pending = False
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_alarm(self, signum: int, frame: types.FrameType | None) -> None:
        if self.guarded:
            self.guarded = False
            raise SnippetTimeout()
        self.pending = True

    def arm(self, seconds: float) -> None:
        self.pending = False
        self.guarded = True
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))

    def disarm(self) -> None:
        self.guarded = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def pause(self) -> float:
        was = self.guarded
        self.guarded = False
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        return remaining if was else -1.0

    def resume(self, remaining: float) -> None:
        if remaining < 0:
            return
        if self.pending or remaining == 0:
            self.pending = False
            raise SnippetTimeout()
        self.guarded = True
        signal.setitimer(signal.ITIMER_REAL, remaining)


@dataclass
class Channel:
    rfd: int
    wfd: int


class Session:
    """One interpreter state and the code that runs in it."""

    def __init__(self, host: Channel, tools: list[str], max_output_chars: int, memory_mb: int):
        self.host = host
        self.channel = host  # where tool calls go: the host, or W for a candidate
        self.max_output = max_output_chars
        self.memory_mb = memory_mb
        self.clock = _Clock()
        self.collector = PrintCollector(max_output_chars)
        self.final: Any = NO_VALUE
        self.runs = 0
        self._pause_stack: list[float] = []
        extra: dict[str, Any] = {"final_answer": self._final_answer}
        extra["web_search"] = self._no_web_search
        for name in tools:
            extra[name] = self._make_tool(name)
        importer = make_importer(self._pause, self._resume)
        self.ns = make_globals(make_builtins(importer, extra), self._print_factory)

    def _print_factory(self, _getattr: Any = None) -> PrintCollector:
        """`_print_`: every print scope writes to the current run's collector."""
        return self.collector

    # ---- builtins given to model code

    def _final_answer(self, *args: Any, **kwargs: Any) -> None:
        if len(args) + len(kwargs) != 1:
            raise TypeError("final_answer() takes exactly one argument")
        value = args[0] if args else next(iter(kwargs.values()))
        self.final = to_wire(value, self.max_output)
        raise FinalAnswerSignal()

    @staticmethod
    def _no_web_search(*args: Any, **kwargs: Any) -> str:
        return NO_WEB_SEARCH

    def _make_tool(self, name: str) -> Any:
        def tool(*args: Any, **kwargs: Any) -> str:
            if len(args) + len(kwargs) != 1:
                raise TypeError(f"{name}() takes exactly one argument")
            arg = args[0] if args else next(iter(kwargs.values()))
            if not isinstance(arg, str):
                arg = str(arg)
            if len(arg) > MAX_TOOL_ARG:
                raise ValueError(f"{name}(): argument longer than {MAX_TOOL_ARG} characters")
            return self._call_tool(name, arg)

        tool.__name__ = tool.__qualname__ = name
        return tool

    def _call_tool(self, name: str, arg: str) -> str:
        remaining = self.clock.pause()
        try:
            protocol.send(self.channel.wfd, {"t": "tool", "name": name, "arg": arg})
            reply = protocol.recv(self.channel.rfd, 1 << 30)
        finally:
            self.clock.resume(remaining)
        if reply.get("ok"):
            return str(reply.get("value", ""))
        raise ToolError(f"{name} failed: {reply.get('value', 'unknown error')}")

    def _pause(self) -> None:
        self._pause_stack.append(self.clock.pause())

    def _resume(self) -> None:
        self.clock.resume(self._pause_stack.pop() if self._pause_stack else -1.0)

    # ---- running code

    def execute(self, code: str, timeout: float) -> dict[str, Any]:
        start = time.perf_counter()
        self.runs += 1
        filename = f"<code-{self.runs}>"
        self.collector = PrintCollector(self.max_output)
        self.final = NO_VALUE
        error: str | None = None
        timed_out = False
        last_repr = last_str = "None"
        self._pause_stack.clear()
        try:
            compiled = compile_snippet(code, filename)
        except SyntaxError as exc:
            error = clean(str(exc), MAX_ERROR)
        except (MemoryError, RecursionError, ValueError) as exc:
            error = f"{type(exc).__name__}: the code could not be compiled"
        else:
            self.ns[LAST_VALUE] = NO_VALUE
            limit_cpu_for_call(timeout)
            try:
                self.clock.arm(timeout)
                try:
                    with contextlib.suppress(FinalAnswerSignal):
                        exec(compiled, self.ns)
                    value = self.ns.pop(LAST_VALUE, NO_VALUE)
                    if self.final is NO_VALUE and value is not NO_VALUE:
                        last_repr = safe_repr(value, self.max_output)
                        last_str = safe_repr(value, self.max_output, str)
                finally:
                    self.clock.disarm()
            except SnippetTimeout:
                timed_out = True
                error = (
                    f"TimeoutError: the code ran longer than {timeout:g} s and was stopped "
                    "(variables from earlier steps are kept)."
                )
            except FinalAnswerSignal:  # pragma: no cover - raised outside exec
                pass
            except BaseException as exc:
                error = self._describe(exc, code, filename)
            finally:
                self.ns.pop(LAST_VALUE, None)
        if self.final is not NO_VALUE:
            last_repr = safe_repr(self.final, self.max_output)
            last_str = safe_repr(self.final, self.max_output, str)
        stdout = self.collector.text()
        truncated = self.collector.dropped > 0
        if truncated:
            stdout += f"\n[output truncated: {self.collector.dropped} more characters]\n"
        return {
            "t": "result",
            "stdout": clean(stdout, self.max_output + 200),
            "error": error,
            "last_value_repr": last_repr,
            "last_value_str": last_str,
            "is_final": self.final is not NO_VALUE,
            "final_answer": None if self.final is NO_VALUE else self.final,
            "truncated": truncated,
            "timed_out": timed_out,
            "duration_ms": (time.perf_counter() - start) * 1000,
        }

    def _describe(self, exc: BaseException, code: str, filename: str) -> str:
        if isinstance(exc, MemoryError):
            message = f"MemoryError: the code ran out of memory (limit {self.memory_mb} MiB)"
        else:
            try:
                message = f"{type(exc).__name__}: {exc}"
            except Exception:
                message = type(exc).__name__
        lineno = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                lineno = tb.tb_lineno
            tb = tb.tb_next
        lines = code.splitlines()
        if lineno is not None and 0 < lineno <= len(lines):
            line = lines[lineno - 1].strip()
            message = f"Code execution failed at line '{line}' due to: {message}"
        return clean(message, MAX_ERROR)

    # ---- serving

    def serve(self) -> None:
        protocol.send(self.host.wfd, {"t": "ready", "pid": os.getpid()})
        while True:
            try:
                msg = protocol.recv(self.host.rfd, 1 << 30)
            except protocol.ProtocolError:
                os._exit(0)
            kind = msg.get("t")
            if kind == "run":
                reply = self.execute(str(msg.get("code", "")), float(msg.get("timeout", 10)))
                protocol.send(self.host.wfd, reply)
            elif kind == "cands":
                self.candidates(
                    [str(c) for c in msg.get("codes", [])],
                    float(msg.get("timeout", 10)),
                    float(msg.get("grace", 0.5)),
                )
            elif kind == "ping":
                protocol.send(self.host.wfd, {"t": "pong", "pid": os.getpid()})
            elif kind in ("commit", "discard"):
                protocol.send(self.host.wfd, {"t": "discarded"})
            else:
                os._exit(0)

    def candidates(self, codes: list[str], timeout: float, grace: float) -> None:
        """Fork one child per snippet, gather results, then commit or discard.

        Returns in the committed child (which then serves the host) and in this
        process after a discard; this process exits after a commit."""
        children: list[_Child] = []
        gc.freeze()  # the forks' collector then leaves the shared pages alone
        for code in codes:
            c2w_r, c2w_w = os.pipe()
            w2c_r, w2c_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                for other in children:
                    os.close(other.rfd)
                    os.close(other.wfd)
                os.close(c2w_r)
                os.close(w2c_w)
                self._candidate_child(Channel(w2c_r, c2w_w), code, timeout)
                return  # promoted: serve the host from here on
            os.close(c2w_w)
            os.close(w2c_r)
            children.append(_Child(pid, c2w_r, w2c_w))
        gc.unfreeze()
        results = self._gather(children, timeout, grace)
        protocol.send(self.host.wfd, {"t": "results", "results": results})
        try:
            msg = protocol.recv(self.host.rfd, 1 << 30)
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
            protocol.send(self.host.wfd, {"t": "discarded"})
            return
        for child in children:
            if child is not chosen:
                # no waitpid: this process exits next, and the keeper reaps them
                _signal(child)
        try:
            protocol.send(chosen.wfd, {"t": "promote"})
        except protocol.ProtocolError:
            _kill(chosen)
            protocol.send(self.host.wfd, {"t": "discarded"})
            return
        protocol.send(self.host.wfd, {"t": "committed", "pid": chosen.pid})
        os._exit(0)

    def _candidate_child(self, channel: Channel, code: str, timeout: float) -> None:
        gc.unfreeze()
        self.channel = channel
        try:
            result = self.execute(code, timeout)
            protocol.send(channel.wfd, result)
            verdict = protocol.recv(channel.rfd, 1 << 20)
        except BaseException:
            os._exit(0)
        if verdict.get("t") != "promote":
            os._exit(0)
        os.close(channel.rfd)
        os.close(channel.wfd)
        self.channel = self.host

    def _gather(self, children: list[_Child], timeout: float, grace: float) -> list[Any]:
        results: list[Any] = [None] * len(children)
        bound = protocol.result_bound(self.max_output)
        deadline = time.monotonic() + timeout + grace
        waiting = {c.rfd: i for i, c in enumerate(children)}
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
                    reply = self._forward_tool(i, msg)
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

    def _forward_tool(self, index: int, msg: dict[str, Any]) -> dict[str, Any]:
        protocol.send(
            self.host.wfd,
            {"t": "tool", "cand": index, "name": msg.get("name"), "arg": msg.get("arg")},
        )
        try:
            return protocol.recv(self.host.rfd, 1 << 30)
        except protocol.ProtocolError:
            os._exit(0)


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
    rfd, wfd = int(argv[0]), int(argv[1])
    config = json.loads(argv[2])
    limits = Limits(**config["limits"])
    apply_limits(limits)
    host_pid = os.getppid()
    set_subreaper()
    if os.fork() != 0:
        os.close(rfd)
        os.close(wfd)
        _keeper(host_pid)
    session = Session(
        Channel(rfd, wfd), list(config["tools"]), int(config["max_output_chars"]),
        limits.memory_mb,
    )
    for name in config.get("preload", []):
        real_import(name)
    session.serve()
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
