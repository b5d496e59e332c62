"""`LoopRunner`: issue 5's agent loop (`edgeagent.agent.loop.Agent`) as an `AgentRunner`.

One `Agent` per question (its config comes from the app's current settings:
votes, temperature, max steps, wiki); the wiki index is opened once per name.
`cancel()` reaches the running agent, which stops the engine and its sandbox.
Chat history is not passed on: each question is a new agent task. Not covered:
the first-thought prefix, teacher prompts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from edgeagent.agent.events import EventHandler
from edgeagent.agent.loop import Agent, AgentConfig
from edgeagent.engines.base import Message
from edgeagent.tui.runner import RunSettings


class LoopRunner:
    def __init__(self, engine: Any, model_label: str, quant: str) -> None:
        self.engine = engine
        self.model_label = model_label
        self.quant = quant
        self._agent: Agent | None = None
        self._lock = threading.Lock()
        self._search: dict[str, Callable[..., Any]] = {}

    def _search_for(self, wiki: str | None) -> Callable[..., Any] | None:
        if not wiki:
            return None
        if wiki not in self._search:
            from edgeagent.wiki.index import WikiIndex

            self._search[wiki] = WikiIndex.open(wiki).search
        return self._search[wiki]

    def run(self, question: str, *, on_event: EventHandler, history: Sequence[Message],
            settings: RunSettings) -> dict[str, Any]:
        config = AgentConfig(votes=settings.votes, temperature=settings.temperature,
                             top_p=settings.top_p, max_steps=settings.max_steps,
                             max_tokens=settings.max_tokens)
        agent = Agent(self.engine, search=self._search_for(settings.wiki), config=config,
                      on_event=on_event, model_name=self.model_label)
        with self._lock:
            self._agent = agent
        try:
            return agent.run(question).to_dict()
        finally:
            with self._lock:
                self._agent = None

    def cancel(self) -> None:
        with self._lock:
            agent = self._agent
        if agent is not None:
            agent.cancel()
        else:
            self.engine.cancel()

    def close(self) -> None:
        self.engine.close()
