"""One interpreter state in the worker and the model code that runs in it.

`Session.execute` compiles a snippet under the policy (`policy`), runs it with
the soft time limit (`Clock`: SIGALRM raises `SnippetTimeout` inside model
code, paused while a host tool runs or an allowlisted module imports, so the
state survives), and returns the result frame. Host tools become builtins of
model code that send a `tool` frame on the session's channel and wait for
the answer.

With `python_layer=False` (only `breach.UnguardedSandbox`, a test entry
point) the snippet runs as plain Python with the real builtins, so tests can
check what the OS layer (`confine`) stops on its own.

Not covered: the request loop and the keeper (`worker`), candidates
(`candidates`), the guards themselves (`policy`, `objects`).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import signal
import time
import types
from dataclasses import dataclass
from typing import Any

from edgeagent.tools.sandbox import protocol
from edgeagent.tools.sandbox.limits import limit_cpu_for_call
from edgeagent.tools.sandbox.namespace import make_builtins, make_globals
from edgeagent.tools.sandbox.objects import make_importer, trust
from edgeagent.tools.sandbox.policy import LAST_VALUE, NO_VALUE, PrintCollector, compile_snippet
from edgeagent.tools.sandbox.values import clean, safe_repr, to_wire

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


def compile_plain(code: str, filename: str) -> types.CodeType:
    """Plain Python (no guards), keeping the last expression's value."""
    tree = ast.parse(code, filename)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        assign = ast.Assign([ast.Name(LAST_VALUE, ast.Store())], last.value)
        tree.body[-1] = ast.copy_location(assign, last)
        ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec")


class Clock:
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

    def __init__(
        self, host: Channel, tools: list[str], max_output_chars: int, memory_mb: int,
        *, python_layer: bool = True,
    ) -> None:
        self.host = host
        self.channel = host  # where tool calls go: the host, or W for a candidate
        self.max_output = max_output_chars
        self.memory_mb = memory_mb
        self.clock = Clock()
        self.collector = PrintCollector(max_output_chars)
        self.final: Any = NO_VALUE
        self.runs = 0
        self._pause_stack: list[float] = []
        extra: dict[str, Any] = {"final_answer": self._final_answer}
        extra["web_search"] = self._no_web_search
        for name in tools:
            extra[name] = self._make_tool(name)
        self.python_layer = python_layer
        if python_layer:
            importer = make_importer(self._pause, self._resume)
            self.ns = make_globals(make_builtins(importer, extra), self._print_factory)
        else:
            trust(*extra.values())
            self.ns = {"__builtins__": builtins, "__name__": "__breach__", **extra}

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
        if not self.python_layer:
            self.ns["print"] = self.collector._call_print
        self.final = NO_VALUE
        error: str | None = None
        timed_out = False
        last_repr = "None"
        self._pause_stack.clear()
        try:
            compile_fn = compile_snippet if self.python_layer else compile_plain
            compiled = compile_fn(code, filename)
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
        stdout = self.collector.text()
        truncated = self.collector.dropped > 0
        if truncated:
            stdout += f"\n[output truncated: {self.collector.dropped} more characters]\n"
        return {
            "t": "result",
            "stdout": clean(stdout, self.max_output + 200),
            "error": error,
            "last_value_repr": last_repr,
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
