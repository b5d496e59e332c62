"""One request's run on a worker thread: the agent (`NAME`) or the plain model (`NAME:chat`).

`Job.start(loop)` takes its model from the offered ones (loading it if another
is loaded), leases a `RequestEngine` from its host and runs in a daemon thread;
what it produces crosses to the event loop through `job.queue` as
`("reasoning" | "content", text)` pieces, then one `("done", Outcome)` or
`("error", APIError)`. `Job.cancel()` (thread-safe) stops the decode after its
current token and ends the agent run, which closes its sandbox; `on_finish`
fires on the loop when the thread is over (the slot is free again then).
Not covered: admission, HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgeagent.agent import events as ev
from edgeagent.engines.base import Message
from edgeagent.errors import UserError
from edgeagent.serve.deltas import StepWriter
from edgeagent.serve.errors import APIError
from edgeagent.serve.hosts import EngineHost, RequestEngine
from edgeagent.serve.offered import OfferedModels
from edgeagent.serve.request import ChatRequest, agent_question

log = logging.getLogger("edgeagent.serve")
Mode = Literal["agent", "chat"]


@dataclass
class Outcome:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    trajectory: dict[str, Any] | None = None


@dataclass
class AgentDefaults:
    """Server-side defaults a request may override."""

    max_steps: int = 5
    max_tokens: int = 512
    chat_temperature: float = 0.7
    code_timeout_s: float = 10.0


class Job:
    def __init__(self, models: OfferedModels, model: str, req: ChatRequest, mode: Mode, *,
                 search: Any = None, defaults: AgentDefaults | None = None) -> None:
        self.models = models
        self.model = model
        self.host: EngineHost = models.current
        self.req = req
        self.mode = mode
        self.search = search
        self.defaults = defaults or AgentDefaults()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._engine: RequestEngine | None = None
        self._agent: Any = None
        self.on_finish: Callable[[], None] | None = None

    # -- loop side -------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        threading.Thread(target=self._main, name="edgeagent-job", daemon=True).start()

    def cancel(self) -> None:
        """Stop this run soon; safe from any thread, before or after `start`."""
        self._cancel.set()
        with self._lock:
            if self._agent is not None:
                self._agent.cancel()
            elif self._engine is not None:
                self._engine.cancel()

    # -- worker side -------------------------------------------------------------

    def _put(self, kind: str, value: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    def _main(self) -> None:
        try:
            with self.models.use(self.model) as host, host.lease() as engine:
                self.host = host
                with self._lock:
                    self._engine = engine
                if self._cancel.is_set():
                    engine.cancel()
                outcome = self._chat(engine) if self.mode == "chat" else self._agent_run(engine)
            self._put("done", outcome)
        except APIError as exc:
            self._put("error", exc)
        except UserError as exc:
            self._put("error", APIError(400, str(exc)))
        except Exception as exc:  # a bug: keep the server up, tell the client, log it
            log.exception("request failed")
            self._put("error", APIError(500, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            if self._loop is not None and self.on_finish is not None:
                self._loop.call_soon_threadsafe(self.on_finish)

    def _chat(self, engine: RequestEngine) -> Outcome:
        r = self.req
        messages: list[Message] = list(r.messages)
        comps = engine.generate(
            messages, n=1,
            temperature=self.defaults.chat_temperature if r.temperature is None else r.temperature,
            top_p=1.0 if r.top_p is None else r.top_p,
            max_tokens=r.max_tokens or self.defaults.max_tokens, stop=r.stop, seed=r.seed,
            on_token=lambda i, piece: self._put("content", piece),
        )
        c = comps[0]
        finish = {"length": "length", "cancelled": "cancelled"}.get(c.finish_reason, "stop")
        return Outcome(finish, c.prompt_tokens, c.completion_tokens)

    def _agent_run(self, engine: RequestEngine) -> Outcome:
        from edgeagent.agent.loop import Agent, AgentConfig

        r, d = self.req, self.defaults
        config = AgentConfig(
            votes=r.votes, temperature=r.temperature, top_p=r.top_p,
            max_steps=r.max_steps or d.max_steps, max_tokens=r.max_tokens or d.max_tokens,
            seed=r.seed, code_timeout_s=d.code_timeout_s,
        )
        writer = StepWriter(r.votes)

        def on_event(event: ev.Event) -> None:
            for kind, text in writer(event):
                if text:
                    self._put(kind, text)

        agent = Agent(engine, search=self.search, config=config, on_event=on_event,
                      model_name=self.host.name)
        with self._lock:
            self._agent = agent
        if self._cancel.is_set():
            agent.cancel()
        traj = agent.run(agent_question(r.messages))
        traj.engine = self.host.engine_type
        tokens = traj.tokens or {}
        outcome = Outcome("stop", int(tokens.get("prompt", 0)), int(tokens.get("completion", 0)),
                          traj.to_dict())
        if traj.cancelled:
            outcome.finish_reason = "cancelled"
        elif traj.answer is None:
            raise APIError(500, f"the agent gave no answer: {traj.error or 'unknown reason'}",
                           code="no_answer")
        return outcome
