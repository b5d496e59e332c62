"""Sharing loaded models between concurrent requests.

Each request gets its own `RequestEngine`: the `Engine` its agent sees, with a
cancel flag of its own (cancelling one client never stops another's decode) and
a token counter shared by the whole server (`/health` shows it). Cancellation
works through the engine's `on_token` callback: the guard raises as soon as
the flag is set, the engine unwinds after the token it was sampling (its KV
bookkeeping stays consistent), and the request sees `finish_reason
"cancelled"`, which ends the agent run and releases its sandbox.

Where the requests' decodes go (`--engines`):

- `shared`: one `LlamaCppEngine`; `generate` calls of concurrent requests take
  turns on it (its lock), while sandbox runs and searches overlap.
- `per-slot`: one engine per `--parallel` slot, each with its share of the
  CPU threads; requests run side by side.
- `batched`: one model, concurrent requests' steps decoded together in one
  llama batch (`edgeagent.serve.batched`).

Not covered: admission and queueing (`admission`), the HTTP layer.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol

from edgeagent.engines.base import Completion, Engine, Message, TokenCallback

HostKind = Literal["shared", "per-slot", "batched"]


class TokenCounter:
    """Tokens decoded for all requests (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


class _Stop(Exception):
    """Raised from inside `on_token` to unwind a cancelled decode."""


def cancelled_completions(n: int) -> list[Completion]:
    return [Completion(text="", finish_reason="cancelled", prompt_tokens=0, completion_tokens=0)
            for _ in range(n)]


class RequestEngine:
    """One request's view of a shared engine; `cancel()` stops only this request."""

    def __init__(self, engine: Any, counter: TokenCounter, name: str, *,
                 cancel_event: threading.Event | None = None, count: bool = True) -> None:
        self._engine = engine
        self._counter = counter
        self._count = count  # False where the engine counts its own decoded tokens
        self.name = name
        self._cancelled = cancel_event or threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1,
                 on_token: TokenCallback | None = None, **kwargs: Any) -> list[Completion]:
        if self._cancelled.is_set():
            return cancelled_completions(n)

        def guard(i: int, piece: str) -> None:
            if self._cancelled.is_set():
                raise _Stop
            if self._count:
                self._counter.add()
            if on_token is not None:
                on_token(i, piece)

        try:
            return list(self._engine.generate(messages, n=n, on_token=guard, **kwargs))
        except _Stop:
            return cancelled_completions(n)

    def keep_prefix(self, prompt: Sequence[Message] | str, *, before: str | None = None) -> int:
        """The engine's `keep_prefix` (the agent's fixed prompt start), where it has one."""
        keep = getattr(self._engine, "keep_prefix", None)
        return int(keep(prompt, before=before)) if callable(keep) else 0

    def close(self) -> None:
        """Nothing to free: the engine belongs to the host."""


class EngineHost(Protocol):
    name: str
    engine_type: str  # recorded as the trajectory's `engine`
    counter: TokenCounter

    def lease(self) -> contextlib.AbstractContextManager[RequestEngine]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class PoolHost:
    """`shared` (one engine, turns on its lock) or `per-slot` (one engine per slot)."""

    def __init__(self, engines: list[Engine], name: str, kind: HostKind) -> None:
        self.name = name
        self.kind = kind
        self.counter = TokenCounter()
        self._engines = engines
        self.engine_type = type(engines[0]).__name__
        self._free: queue.Queue[Engine] = queue.Queue()
        for e in engines:
            self._free.put(e)

    @contextlib.contextmanager
    def lease(self) -> Iterator[RequestEngine]:
        if self.kind == "shared":
            yield RequestEngine(self._engines[0], self.counter, self.name)
            return
        engine = self._free.get()  # admission keeps leases <= engines: never waits long
        try:
            yield RequestEngine(engine, self.counter, self.name)
        finally:
            self._free.put(engine)

    def info(self) -> dict[str, Any]:
        first: Any = self._engines[0]
        info: dict[str, Any] = dict(first.info()) if hasattr(first, "info") else {}
        info.update(engines=self.kind, engine_count=len(self._engines))
        return info

    def close(self) -> None:
        for e in self._engines:
            e.close()
