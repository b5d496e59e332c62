"""`LogScreen`: what the app noted this session (model load, errors, exports)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import RichLog


class LogScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, lines: list[str]) -> None:
        super().__init__(classes="dialog")
        self.lines = lines

    def compose(self) -> ComposeResult:
        log = RichLog(id="log-view", wrap=True, markup=False)
        log.border_title = "Logs (Esc to close)"
        yield log

    def on_mount(self) -> None:
        log = self.query_one(RichLog)
        for line in self.lines or ["(nothing logged yet)"]:
            log.write(line)

    def action_close(self) -> None:
        self.dismiss(None)
