"""One assistant turn folded from agent events: steps, streamed text, answer, status.

`Turn.apply(event)` is a pure reducer (no Textual), so the chat widget, the
store (which saves `Turn.steps_json()`) and tests share one interpretation of
the event stream. `Turn.from_stored(...)` rebuilds a turn from the DB.

Only candidate 0's tokens are kept as the live text: with voting, the other
candidates are shown once parsed (`Candidate` events). Not covered: rendering.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgeagent.agent.events import (
    AgentError,
    Cancelled,
    Candidate,
    Event,
    FinalAnswer,
    Observation,
    RunStart,
    StepStart,
    Token,
    Vote,
)


@dataclass
class StepView:
    """What the UI shows for one agent step."""

    step: int
    thought: str = ""
    code: str | None = None
    observation: str = ""
    error: str | None = None
    passages: list[dict[str, Any]] = field(default_factory=list)
    agree: int | None = None
    total: int | None = None
    chosen: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    fallback: bool = False
    done: bool = False

    @property
    def shown(self) -> bool:
        """Whether the step has anything to show beyond streamed text."""
        return bool(self.done or self.candidates or self.agree is not None or self.error)

    @property
    def tally(self) -> str:
        return f"{self.agree}/{self.total} agree" if self.agree is not None else ""


@dataclass
class Turn:
    status: str = "streaming"  # streaming | done | cancelled | error
    steps: list[StepView] = field(default_factory=list)
    live: str = ""  # streamed text of the current step (candidate 0)
    answer: str | None = None
    error: str | None = None
    tokens: int = 0  # streamed pieces, a tok/s estimate when the record has none

    def step(self, number: int) -> StepView:
        for s in self.steps:
            if s.step == number:
                return s
        s = StepView(step=number)
        self.steps.append(s)
        return s

    def apply(self, event: Event) -> str:
        """Fold one event in; returns what changed: live|step|answer|end|none."""
        if isinstance(event, RunStart):
            return "none"
        if isinstance(event, StepStart):
            self.step(event.step).fallback = event.fallback
            self.live = ""
            return "step"
        if isinstance(event, Token):
            if event.candidate == 0:
                self.live += event.text
                self.tokens += 1
                return "live"
            return "none"
        if isinstance(event, Candidate):
            self.step(event.step).candidates.append({
                "index": event.index, "ok": event.ok, "key": event.key,
                "thought": event.thought, "code": event.code,
                "observation": event.observation, "error": event.error, "cut": event.cut,
            })
            return "step"
        if isinstance(event, Vote):
            s = self.step(event.step)
            s.agree, s.total, s.chosen = event.agree, event.total, event.chosen
            return "step"
        if isinstance(event, Observation):
            s = self.step(event.step)
            s.thought, s.code, s.observation = event.thought, event.code, event.text
            s.error, s.passages, s.done = event.error, list(event.passages), True
            self.live = ""
            return "step"
        if isinstance(event, FinalAnswer):
            self.answer = str(event.answer)
            self.live = ""
            self.status = "done"
            return "answer"
        if isinstance(event, AgentError):
            if event.step is not None:
                self.step(event.step).error = event.message
            else:
                self.error = event.message
            return "step"
        if isinstance(event, Cancelled):
            self.status = "cancelled"
            return "end"
        return "none"

    def content(self) -> str:
        """The text saved as the message content (the answer, or what streamed so far)."""
        if self.answer is not None:
            return self.answer
        return self.live

    def steps_json(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(s) for s in self.steps]

    @classmethod
    def from_stored(cls, content: str, status: str, steps: list[dict[str, Any]]) -> Turn:
        known = {f.name for f in dataclasses.fields(StepView)}
        turn = cls(status=status)
        turn.steps = [StepView(**{k: v for k, v in s.items() if k in known})
                      for s in steps if isinstance(s, dict) and "step" in s]
        if status == "done":
            turn.answer = content
        else:
            turn.live = content
        return turn
