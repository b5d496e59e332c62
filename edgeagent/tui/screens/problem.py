"""`ProblemScreen`: a plain explanation of what is missing or broken, and the fix."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ProblemScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,c", "close", "Continue"),
        Binding("q", "quit_app", "Quit"),
    ]

    def __init__(self, title: str, message: str, fix: str) -> None:
        super().__init__(classes="problem")
        self.title_text, self.message, self.fix = title, message, fix

    def compose(self) -> ComposeResult:
        with Vertical(id="problem-box"):
            yield Static(Text(self.title_text, style="bold"), id="problem-title")
            yield Static(Text(self.message), id="problem-message")
            yield Static(Text.assemble(("To fix it: ", "bold"), self.fix), id="problem-fix")
            yield Static("Enter continue (chat history stays readable) · q quit",
                         id="problem-keys")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_quit_app(self) -> None:
        self.app.exit(1)
