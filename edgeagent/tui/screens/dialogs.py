"""Small modal dialogs: a text prompt, a choice list, a yes/no confirmation, settings."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


class TextPrompt(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel")]

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__(classes="dialog")
        self.prompt_title, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Text(self.prompt_title, style="bold"))
            yield Input(value=self.value, id="prompt-input")
            yield Static("Enter accept · Esc cancel", classes="dialog-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_close(self) -> None:
        self.dismiss(None)


class ChoicePrompt(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]], empty: str) -> None:
        """`choices`: (value, label) pairs; `empty`: the text shown when there are none."""
        super().__init__(classes="dialog")
        self.prompt_title, self.choices, self.empty = title, choices, empty

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Text(self.prompt_title, style="bold"))
            if self.choices:
                yield OptionList(*[Option(Text(label), id=value)
                                   for value, label in self.choices])
            else:
                yield Static(Text(self.empty))
            yield Static("Enter choose · Esc cancel", classes="dialog-keys")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_close(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="dialog")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Text(self.question, style="bold"))
            yield Static("y yes · n no", classes="dialog-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SettingsPrompt(ModalScreen[dict[str, str] | None]):
    """Votes, temperature and max steps; returns the raw strings (the app validates)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel")]

    def __init__(self, votes: int, temperature: float, max_steps: int) -> None:
        super().__init__(classes="dialog")
        self.values = {"votes": str(votes), "temperature": f"{temperature:g}",
                       "max_steps": str(max_steps)}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box"):
            yield Static(Text("Answer settings", style="bold"))
            for name, value in self.values.items():
                yield Static(name.replace("_", " "))
                yield Input(value=value, id=f"set-{name}")
            yield Static("Enter apply · Tab next · Esc cancel", classes="dialog-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss({name: self.query_one(f"#set-{name}", Input).value.strip()
                      for name in self.values})

    def action_close(self) -> None:
        self.dismiss(None)
