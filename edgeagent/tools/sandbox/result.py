"""What one snippet run returns, and how it reads as the agent's observation.

Covers `ExecResult` and the paper-compatible rendering of observation and
error turns (DESIGN.md, "Agent step format"). Does not cover running code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RETRY_HINT = (
    "Now let's retry: take care not to repeat previous errors! If you have retried "
    "several times, try a completely different approach.\n"
)


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one snippet.

    `stdout` is the printed text (capped; `truncated` says so). `last_value_repr`
    is the repr of the last expression statement (or of the variable a final
    plain assignment bound), "None" otherwise; `last_value_str` is its `str()`,
    which the observation shows (the paper's smolagents agent writes
    `str(output)` there, so a search result reads as lines). `final_answer` is the value given
    to `final_answer(x)`: `x` itself when JSON-able (numpy scalars and arrays
    converted), else its repr. `error` is None on success. `timed_out` and
    `restarted` tell the agent that the time limit hit and whether the session's
    variables were lost with it.
    """

    stdout: str = ""
    error: str | None = None
    last_value_repr: str = "None"
    last_value_str: str = "None"
    is_final: bool = False
    final_answer: Any = None
    truncated: bool = False
    timed_out: bool = False
    restarted: bool = False
    duration_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def observation(self) -> str:
        """`Execution logs:\\n<stdout>Last output from code snippet:\\n<str>`."""
        return (
            f"Execution logs:\n{self.stdout}"
            f"Last output from code snippet:\n{self.last_value_str}"
        )

    @classmethod
    def from_wire(cls, data: dict[str, Any], **overrides: Any) -> ExecResult:
        """Build from the worker's JSON message, ignoring unknown keys."""
        fields: dict[str, Any] = {
            "stdout": str(data.get("stdout", "")),
            "error": None if data.get("error") is None else str(data["error"]),
            "last_value_repr": str(data.get("last_value_repr", "None")),
            "last_value_str": str(data.get("last_value_str", data.get("last_value_repr",
                                                                        "None"))),
            "is_final": bool(data.get("is_final", False)),
            "final_answer": data.get("final_answer"),
            "truncated": bool(data.get("truncated", False)),
            "timed_out": bool(data.get("timed_out", False)),
            "duration_ms": float(data.get("duration_ms", 0.0)),
        }
        fields.update(overrides)
        return cls(**fields)


def format_observation(result: ExecResult, step: int) -> str:
    """The observation turn (role user) of step `step` (counted from 1)."""
    return f"Call id: call_{step}\nObservation:\n{result.observation()}"


def format_error(result: ExecResult, step: int) -> str:
    """The error turn (role user) of step `step`; `result.error` must be set."""
    return f"Call id: call_{step}\nError:\n{result.error}\n{RETRY_HINT}"


def render_turns(result: ExecResult, step: int) -> list[str]:
    """The user turns that follow step `step`'s code.

    Success: one observation turn. Error: the printed output so far as an
    observation turn (`Execution logs:\\n<stdout>`, only when something was
    printed), then the error turn, as the reference agent recorded them.
    """
    if result.error is None:
        return [format_observation(result, step)]
    turns = []
    if result.stdout:
        turns.append(f"Call id: call_{step}\nObservation:\nExecution logs:\n{result.stdout}")
    turns.append(format_error(result, step))
    return turns
