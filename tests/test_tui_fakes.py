"""Fakes shared by the TUI tests (no tests here): a scripted runner and backend.

`ScriptedRunner` plays a fixed two-step agent run (search, then answer, with
a 2/3 vote on step 1) through `on_event`, like the agent loop would; with
`block_after=k` it stops after k events and waits until `cancel()`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeagent import locations
from edgeagent.agent.events import (
    Cancelled,
    Candidate,
    Event,
    EventHandler,
    FinalAnswer,
    Observation,
    RunStart,
    StepStart,
    Token,
    Vote,
)
from edgeagent.engines.base import Message
from edgeagent.tui.app import EdgeAgentApp
from edgeagent.tui.config import load_config
from edgeagent.tui.runner import AgentRunner, RunSettings
from edgeagent.tui.screens.setup import SetupTask
from edgeagent.tui.store import Store

THOUGHT1 = "I should **search** the wiki for the capital of France."
CODE1 = 'print(web_search("capital of France"))'
OBS1 = ("Call id: call_1\nObservation:\nExecution logs:\n"
        "Retrieved documents:\n\n===== Document 0, similarity: 0.87 =====\n\"Paris\"\n"
        "Paris is the capital and largest city of France.\n" + "".join(
            f"line {i}\n" for i in range(12)))
THOUGHT2 = "The documents say Paris."
CODE2 = 'final_answer("Paris")'


def scripted_events(question: str) -> list[Event]:
    events: list[Event] = [RunStart(question=question, model="fake-model", votes=3, max_steps=5),
                           StepStart(step=1)]
    events += [Token(step=1, candidate=0, text=t) for t in ("Thought: I ", "should ", "search")]
    for i in range(3):
        events.append(Candidate(step=1, index=i, thought=THOUGHT1, code=CODE1,
                                key="Paris" if i < 2 else "Lyon", ok=True,
                                observation="Paris" if i < 2 else "Lyon"))
    events += [
        Vote(step=1, chosen=0, agree=2, total=3, groups={"Paris": [0, 1], "Lyon": [2]}),
        Observation(step=1, thought=THOUGHT1, code=CODE1, text=OBS1, passages=[
            {"title": "Paris", "text": "Paris is the capital and largest city of France."}]),
        StepStart(step=2),
        Token(step=2, candidate=0, text="Thought: The documents say Paris."),
        Observation(step=2, thought=THOUGHT2, code=CODE2, text="Call id: call_2\nObservation:\n"
                    "Last output from code snippet:\n'Paris'"),
        FinalAnswer(answer="The capital of France is **Paris**.", step=2),
    ]
    return events


class ScriptedRunner:
    model_label = "fake-model"
    quant = "Q4_0"

    def __init__(self, block_after: int | None = None) -> None:
        self.block_after = block_after
        self.cancelled = threading.Event()
        self.questions: list[str] = []
        self.histories: list[list[Message]] = []
        self.closed = False

    def run(self, question: str, *, on_event: EventHandler, history: Sequence[Message],
            settings: RunSettings) -> dict[str, Any]:
        self.questions.append(question)
        self.histories.append(list(history))
        self.cancelled.clear()
        for i, event in enumerate(scripted_events(question)):
            if self.block_after is not None and i == self.block_after:
                self.cancelled.wait(10)
                on_event(Cancelled(step=1))
                return self.record(question, None)
            on_event(event)
        return self.record(question, "The capital of France is **Paris**.")

    def record(self, question: str, answer: str | None) -> dict[str, Any]:
        return {"id": f"fake-{len(self.questions)}", "question": question,
                "model": "fake-model", "engine": "fake", "prompt_version": "test",
                "steps": [{"thought": THOUGHT1, "code": CODE1, "observation": OBS1,
                           "error": None, "final": None}],
                "answer": answer, "tokens": {"prompt": 10, "completion": 42},
                "timings": {"generate_s": 2.0},
                "messages": [{"role": "user", "content": question}]}

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    def __init__(self, runner: AgentRunner | None = None, error: str | None = None) -> None:
        self.runner = runner or ScriptedRunner()
        self.error = error
        self.warning: str | None = None
        self.loaded: list[str | None] = []

    def load_runner(self, model: str | None) -> AgentRunner:
        from edgeagent.errors import UserError

        self.loaded.append(model)
        if self.error:
            raise UserError(self.error)
        return self.runner

    def models(self) -> list[tuple[str, str]]:
        return [("fake-model", "fake-model · Q4_0 · 1 MB (default)")]

    def wikis(self) -> dict[str, int]:
        return {"starter": 31_245}

    def containment_warning(self) -> str | None:
        return self.warning


def make_app(runner: AgentRunner | None = None, *, backend: FakeBackend | None = None,
             setup: list[SetupTask] | None = None, **kw: Any) -> EdgeAgentApp:
    store = Store(locations.history_db())
    return EdgeAgentApp(store=store, backend=backend or FakeBackend(runner),
                        config=load_config(), wiki="starter", setup=setup, **kw)


def write_config(text: str) -> Path:
    path = locations.config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
