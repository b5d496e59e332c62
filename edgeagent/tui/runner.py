"""The TUI's view of "something that answers": `AgentRunner`, and the adapter
that builds the real one.

`AgentRunner.run(question, on_event=…, history=…, settings=…)` runs one
question on a worker thread, calls `on_event` with the events of
`edgeagent.agent.events`, and returns the trajectory record (DESIGN.md
schema) as a dict. `cancel()` may be called from the UI thread at any time:
generation stops after the current token, a running code call is killed.

`build_runner()` loads the GGUF and returns the agent loop's runner
(`agent_runner.LoopRunner`) when `edgeagent.agent.loop` imports, else `ChatRunner`, a plain
chat with the engine (one step, no tools) so the app works before the agent
exists. Not covered: HTTP engines (the TUI runs local models only).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edgeagent.agent.events import Cancelled, EventHandler, FinalAnswer, RunStart, StepStart, Token
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


def chat_record(question: str, answer: str, *, model: str, engine: str,
                messages: list[Message], completion_tokens: int, prompt_tokens: int,
                generate_s: float, total_s: float) -> dict[str, Any]:
    """A trajectory record (DESIGN.md schema) for a one-step chat answer."""
    return {
        "id": uuid.uuid4().hex, "question": question, "model": model, "engine": engine,
        "prompt_version": "tui-chat", "steps": [], "answer": answer,
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "timings": {"generate_s": generate_s, "total_s": total_s},
        "messages": [*messages, {"role": "assistant", "content": answer}],
    }


class ChatRunner:
    """Plain chat with an engine: StepStart(1), Token*, FinalAnswer (or Cancelled)."""

    def __init__(self, engine: Any, model_label: str, quant: str) -> None:
        self.engine = engine
        self.model_label = model_label
        self.quant = quant
        self._stop = threading.Event()

    def run(self, question: str, *, on_event: EventHandler, history: Sequence[Message],
            settings: RunSettings) -> dict[str, Any]:
        messages: list[Message] = [*history, {"role": "user", "content": question}]
        self._stop.clear()

        def on_token(i: int, piece: str) -> None:
            if self._stop.is_set():  # a cancel that came before generate() started
                self.engine.cancel()
            on_event(Token(step=1, candidate=i, text=piece))

        on_event(RunStart(question=question, model=self.model_label, votes=1, max_steps=1))
        on_event(StepStart(step=1))
        start = time.perf_counter()
        out = self.engine.generate(
            messages, temperature=settings.temperature, top_p=settings.top_p,
            max_tokens=settings.max_tokens,
            on_token=on_token,
        )[0]
        total = time.perf_counter() - start
        answer = out.text.strip()
        if out.finish_reason == "cancelled" or self._stop.is_set():
            on_event(Cancelled(step=1))
        else:
            on_event(FinalAnswer(answer=answer, step=1))
        return chat_record(
            question, answer, model=self.model_label, engine="llama.cpp", messages=messages,
            completion_tokens=out.completion_tokens, prompt_tokens=out.prompt_tokens,
            generate_s=out.timings.generate_s or total, total_s=total,
        )

    def cancel(self) -> None:
        self._stop.set()
        self.engine.cancel()

    def close(self) -> None:
        self.engine.close()


def _agent_runner(engine: Any, model_label: str, quant: str) -> AgentRunner | None:
    """The real agent loop as an `AgentRunner`, or None while `edgeagent.agent` has none."""
    try:
        from edgeagent.tui.agent_runner import LoopRunner
    except ImportError:
        return None
    return LoopRunner(engine, model_label, quant)


def build_runner(model_path: Path, model_label: str | None = None,
                 lora: Path | None = None) -> AgentRunner:
    """Load the GGUF (and LoRA adapter; UserError when missing or broken) and wrap it."""
    from edgeagent.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(model_path, lora=lora)
    label = model_label or engine.name
    runner = _agent_runner(engine, label, engine.quant)
    return runner if runner is not None else ChatRunner(engine, label, engine.quant)
