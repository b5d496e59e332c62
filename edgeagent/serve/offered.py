"""The models a server offers: the one it loaded at start and every registered one.

`/v1/models` lists each offered model twice, `NAME` (the agent) and
`NAME:chat` (the plain model). The list is read from the registry on every
call, so a model pulled while the server runs is offered at once. One model is
loaded at a time, as Ollama does on a small machine: a request for another
offered model waits until the running requests on the loaded one are over
(new requests for the loaded one wait behind it, so a switch is never starved),
closes it, loads the requested one and keeps it loaded. If the requested model
cannot load, the previous one is loaded again and the request gets the error.
Not covered: how a model is loaded (`load.open_host`), the HTTP layer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from edgeagent.errors import UserError
from edgeagent.serve.errors import APIError
from edgeagent.serve.hosts import EngineHost

Loader = Callable[[str], EngineHost]


def registered_names() -> list[str]:
    from edgeagent.models.registry import Registry

    try:
        return sorted(Registry.load().entries)
    except UserError:
        return []


class OfferedModels:
    """The loaded host plus the names it can switch to (thread-safe)."""

    def __init__(self, host: EngineHost, loader: Loader | None = None,
                 names: Callable[[], list[str]] = registered_names) -> None:
        self.current = host
        self.first = host.name
        self._loader = loader
        self._names = names
        self._users = 0
        self._switching = False
        self._cond = threading.Condition()

    def names(self) -> list[str]:
        """The loaded model first, then the registered ones (when switching is on)."""
        others = self._names() if self._loader is not None else []
        seen = [self.current.name, self.first]
        return list(dict.fromkeys(seen + others))

    def knows(self, name: str) -> bool:
        return name in (self.current.name, self.first) or (
            self._loader is not None and name in self._names())

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[EngineHost]:
        """The host of `name`, loaded if it is not; held until the block ends."""
        with self._cond:
            while self._switching or (self.current.name != name and self._users):
                self._cond.wait()
            mine = self.current.name != name
            self._switching = mine
            if not mine:
                self._users += 1
        if mine:
            try:
                self._switch(name)
            except BaseException:
                with self._cond:
                    self._switching = False
                    self._cond.notify_all()
                raise
            with self._cond:
                self._switching = False
                self._users += 1
                self._cond.notify_all()
        host = self.current  # stable: no switch while this block holds a use
        try:
            yield host
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    def _switch(self, name: str) -> None:
        """Close the loaded model, load `name`; on failure load the previous one again."""
        if self._loader is None:
            raise APIError(404, f"the model {name!r} is not loaded", param="model",
                           code="model_not_found")
        previous = self.current.name
        self.current.close()
        try:
            self.current = self._loader(name)
        except Exception as exc:
            self.current = self._loader(previous)
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            raise APIError(503, f"cannot load the model {name!r}: {message}", param="model",
                           code="model_load_failed") from None

    def close(self) -> None:
        with self._cond:
            self.current.close()
