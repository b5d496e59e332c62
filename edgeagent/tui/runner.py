"""The TUI's view of "something that answers": `AgentRunner`, the agent loop
as one (`LoopRunner`), and `build_runner`, which loads the GGUF and wraps it.

`AgentRunner.run(question, on_event=…, history=…, settings=…)` runs one
question on a worker thread, calls `on_event` with the events of
`edgeagent.agent.events`, and returns the trajectory record (schema in
docs/architecture.md) as a dict. `cancel()` may be called from the UI thread
at any time: generation stops after the current token, a running code call
is killed.

`LoopRunner` makes one `edgeagent.agent.loop.Agent` per question (its config
comes from the app's current settings: votes, temperature, max steps, wiki);
the wiki index is opened once per name. Chat history is not passed on: each
question is a new agent task. Not covered: HTTP engines (the TUI runs local
models only), the first-thought prefix, teacher prompts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgeagent.agent.events import EventHandler
from edgeagent.agent.loop import Agent, AgentConfig
from edgeagent.engines.base import Message


@dataclass
class RunSettings:
    votes: int = 1
    temperature: float = 0.4
    top_p: float = 0.8
    max_steps: int = 5
    max_tokens: int = 512
    wiki: str | None = None


class AgentRunner(Protocol):
    model_label: str  # e.g. "smollm2-135m-instruct"
    quant: str  # e.g. "Q4_1"

    def run(self, question: str, *, on_event: EventHandler, history: Sequence[Message],
            settings: RunSettings) -> dict[str, Any]: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class LoopRunner:
    """The agent loop as an `AgentRunner`; `cancel()` reaches the running agent."""

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


def build_runner(model_path: Path, model_label: str | None = None) -> AgentRunner:
    """Load the GGUF (UserError when it is missing or broken) and wrap it."""
    from edgeagent.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(model_path)
    return LoopRunner(engine, model_label or engine.name, engine.quant)
