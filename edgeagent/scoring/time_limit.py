"""A time limit for pure-Python work that holds in any thread: `time_limit(s)`.

    with time_limit(5.0):
        slow_sympy_call()          # raises TimeLimitExceeded after 5 s

A timer thread raises `TimeLimitExceeded` in the thread that entered the
block (CPython's `PyThreadState_SetAsyncExc`), so it works in eval's worker
threads as well as the main thread, unlike SIGALRM. `TimeLimitExceeded` is a
`BaseException`, so library code that catches `Exception` does not swallow it.
The exception arrives between bytecodes: a single long C call (one huge
integer power, say) is not interrupted until it returns, which is why callers
also refuse such input up front. Not covered: limits on memory, other
interpreters than CPython.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TimeLimitExceeded(BaseException):
    """The block ran longer than its limit."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `TimeLimitExceeded` in this thread if the block outlasts `seconds`."""
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                _raise_in(target, TimeLimitExceeded)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            if state["fired"]:  # raised, or still pending: never let it escape the block
                _raise_in(target, None)
        timer.cancel()
