"""The bounded request queue: `parallel` runs at once, `max_queue` waiting, 503 beyond.

    ticket = admission.reserve()      # APIError(503) when running + waiting is full
    await ticket.acquire()            # waits for a running slot (cancellable)
    ...                               # the run
    ticket.release()                  # idempotent; frees the slot or the queue place

`reserve` is synchronous so the 503 can still be an HTTP status before a
streamed response begins. Everything here runs on the event loop thread; a
worker thread hands its release back with `loop.call_soon_threadsafe`.
Not covered: fairness between clients (first come, first served).
"""

from __future__ import annotations

import asyncio

from edgeagent.serve.errors import APIError


class Admission:
    def __init__(self, parallel: int, max_queue: int) -> None:
        self.parallel = parallel
        self.max_queue = max_queue
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(parallel)

    def reserve(self) -> Ticket:
        if self.running + self.waiting >= self.parallel + self.max_queue:
            raise APIError(
                503, f"the server is busy ({self.running} running, {self.waiting} queued); "
                "retry later", code="queue_full",
            )
        self.waiting += 1
        return Ticket(self)


class Ticket:
    """One request's place: queued, then running, then released."""

    def __init__(self, admission: Admission) -> None:
        self._adm = admission
        self.state = "queued"

    async def acquire(self) -> None:
        try:
            await self._adm._slots.acquire()
        except BaseException:
            self.release()
            raise
        if self.state != "queued":  # released while waiting: give the slot back
            self._adm._slots.release()
            return
        self._adm.waiting -= 1
        self._adm.running += 1
        self.state = "running"

    def release(self) -> None:
        if self.state == "queued":
            self._adm.waiting -= 1
        elif self.state == "running":
            self._adm.running -= 1
            self._adm._slots.release()
        self.state = "released"
