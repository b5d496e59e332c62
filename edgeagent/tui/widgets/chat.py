"""Chat turns: `UserMessage` and `AnswerView` (steps, streamed text, the answer).

`AnswerView` owns a `Turn`; `apply(event)` folds the event in and updates
only the part that changed, so streaming stays cheap. The final answer is a
bordered Markdown panel. Not covered: persistence (the app saves the turn).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static

from edgeagent.agent.events import Event
from edgeagent.tui.turn import Turn
from edgeagent.tui.widgets.step import StepBlock

LIVE_EVERY_S = 0.05
STATUS_NOTES = {
    "cancelled": "Stopped.",
    "streaming": "Interrupted (the app closed before the answer finished).",
    "error": "Failed.",
}


class UserMessage(Static):
    def __init__(self, text: str) -> None:
        super().__init__(Text(text), classes="user")
        self.border_title = "You"


class AnswerView(Vertical):
    """One assistant turn."""

    def __init__(self, turn: Turn | None = None, *, dark: bool = True,
                 live: bool = False) -> None:
        super().__init__(classes="answer")
        self.turn = turn or Turn()
        self.dark = dark
        self.is_live = live  # False for a turn restored from history
        self._blocks: dict[int, StepBlock] = {}
        self._live_pending = False

    def compose(self) -> ComposeResult:
        yield Vertical(classes="steps")
        yield Static("", classes="live")
        yield Static("", classes="note")

    def on_mount(self) -> None:
        self._sync_blocks()
        self._show_live()
        self._show_end()

    def _sync_blocks(self, refresh: int | None = None) -> None:
        """A block per step that has something to show; re-render step `refresh`."""
        for s in self.turn.steps:
            if not s.shown:
                continue
            fresh = s.step not in self._blocks
            block = self._step_block(s.step)
            if not fresh and s.step == refresh:
                block.refresh_view()

    def _step_block(self, number: int) -> StepBlock:
        block = self._blocks.get(number)
        if block is None:
            block = StepBlock(self.turn.step(number), dark=self.dark)
            self._blocks[number] = block
            self.query_one(".steps", Vertical).mount(block)
        return block

    def _show_live(self) -> None:
        self._live_pending = False
        live = self.query_one(".live", Static)
        text = self.turn.live
        if text and self.turn.steps and self.turn.status == "streaming":
            label = "answering from memory" if self.turn.steps[-1].fallback else \
                f"step {self.turn.steps[-1].step}"
            live.update(Text.assemble((f"⋯ {label}\n", "dim"), text))
        elif not text and self.is_live and self.turn.status == "streaming":
            text = "⋯ thinking…"  # reading the prompt: nothing streamed yet
            live.update(Text(text, style="dim"))
        else:
            live.update(Text(text))
        live.display = bool(text)

    def _schedule_live(self) -> None:
        """Streaming: redraw at most every LIVE_EVERY_S, not once per token."""
        if not self._live_pending:
            self._live_pending = True
            self.set_timer(LIVE_EVERY_S, self._show_live)

    def _show_end(self) -> None:
        t = self.turn
        if t.answer is not None and not self.query(".final"):
            final = Markdown(t.answer or "*(empty answer)*", classes="final")
            final.border_title = "Answer"
            self.mount(final, before=self.query_one(".note"))
        note = self.query_one(".note", Static)
        text = t.error or ""
        if t.status in STATUS_NOTES and not (self.is_live and t.status == "streaming"):
            text = f"{text}\n{STATUS_NOTES[t.status]}".strip()
        note.update(Text(text))
        note.display = bool(text)

    def apply(self, event: Event) -> str:
        change = self.turn.apply(event)
        if change == "live":
            self._schedule_live()
        elif change == "step":
            self._sync_blocks(getattr(event, "step", None))
            self._show_live()
            self._show_end()
        elif change in ("answer", "end"):
            self._show_live()
            self._show_end()
        return change

    def mark(self, status: str) -> None:
        """Force an end state (Esc: 'cancelled'; worker crash: 'error')."""
        self.turn.status = status
        self.is_live = False
        self._show_end()

    def set_collapsed(self, collapsed: bool) -> None:
        for block in self._blocks.values():
            block.collapsed = collapsed
