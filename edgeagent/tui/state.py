"""What the parts of the app share: `AppState`, the base of `EdgeAgentApp`'s
mixins, and `ActiveRun`, the answer in progress.

`AppState` names the state `EdgeAgentApp.__init__` sets up (store, session,
settings, runner, the run in progress…), so each part (`chats.py`,
`asking.py`, `app.py`) is type-checked against one declaration, and holds the
two helpers every part uses: `main` (the chat screen) and `note` (the log).
Not covered: behaviour of any part.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.screen import Screen

from edgeagent.tui.config import TuiConfig
from edgeagent.tui.runner import AgentRunner, RunSettings
from edgeagent.tui.store import Session, Store
from edgeagent.tui.widgets.chat import AnswerView


class ActiveRun:
    """The answer in progress."""

    def __init__(self, run_id: int, message_id: int, view: AnswerView) -> None:
        self.run_id, self.message_id, self.view = run_id, message_id, view
        self.started = time.monotonic()
        self.saved = 0.0


class AppState(App[int]):
    """The app's shared state (set by `EdgeAgentApp.__init__`) and common helpers."""

    store: Store
    session: Session | None
    config: TuiConfig
    settings: RunSettings
    model_spec: str | None
    notes: list[str]
    runner: AgentRunner | None
    runner_error: str | None
    _runner_ready: threading.Event
    _one_run: threading.Lock  # a stopped run finishes before the next starts
    _run: ActiveRun | None
    _next_run: int
    _orphans: dict[int, int]  # stopped run id -> its message id
    _details: bool

    if TYPE_CHECKING:  # defined by one part, used by another
        def _refresh_sessions(self) -> None: ...

        def action_cancel(self) -> None: ...

    @property
    def main(self) -> Screen[Any]:
        """The chat screen (the bottom of the stack), whatever is shown over it."""
        return self.screen_stack[0]

    def note(self, line: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {line}")
        self.log(line)
