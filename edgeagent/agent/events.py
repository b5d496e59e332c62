"""Events the agent loop emits; the TUI, `ask` and eval only subscribe to these.

The loop calls `on_event(event)` for every phase of a run. Events are plain
frozen dataclasses (JSON-able through `dataclasses.asdict`), so a UI can render
them, a log can store them, and tests can assert on them. The loop knows no
screen.

Order within one step: StepStart → Token* → (Candidate* → Vote when voting)
→ Observation → … and at the end FinalAnswer (or AgentError, then FinalAnswer
from the fallback when one was produced). `Cancelled` ends a run early.

Not covered: the trajectory record (see the trajectory module).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStart:
    question: str
    model: str
    votes: int
    max_steps: int


@dataclass(frozen=True)
class StepStart:
    step: int  # 1-based
    fallback: bool = False  # the "answer from memory" call after max steps


@dataclass(frozen=True)
class Token:
    """A streamed text piece of candidate `candidate` in step `step`."""

    step: int
    candidate: int
    text: str


@dataclass(frozen=True)
class Candidate:
    """One sampled action after it was parsed and run in its own sandbox fork."""

    step: int
    index: int
    thought: str
    code: str | None
    key: str  # the vote key: normalised printed output + final answer value
    ok: bool  # parsed and ran without error
    observation: str
    error: str | None = None
    final_answer: Any = None
    cut: bool = False  # the vote was decided before it finished: not run, not counted


@dataclass(frozen=True)
class Vote:
    step: int
    chosen: int
    agree: int  # size of the winning group
    total: int  # candidates sampled
    groups: dict[str, list[int]] = field(default_factory=dict)  # key -> candidate indexes


@dataclass(frozen=True)
class Observation:
    """What the chosen action produced; `error` set when it failed."""

    step: int
    thought: str
    code: str | None
    text: str  # the observation turn exactly as the model will read it
    error: str | None = None
    passages: list[dict[str, Any]] = field(default_factory=list)  # web_search hits, if any


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    step: int
    from_fallback: bool = False


@dataclass(frozen=True)
class AgentError:
    message: str
    step: int | None = None


@dataclass(frozen=True)
class Cancelled:
    step: int | None = None


Event = (
    RunStart | StepStart | Token | Candidate | Vote | Observation | FinalAnswer | AgentError
    | Cancelled
)
EventHandler = Callable[[Event], None]
