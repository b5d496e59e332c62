"""The chats: the session list, opening, renaming and deleting a chat, and
what a user takes out of one (details shown, the last answer or code block
copied, a Markdown or JSONL export).

`ChatsMixin` is one part of `EdgeAgentApp` (app.py); not covered here: asking
and streaming (asking.py), the export formats themselves (export.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.containers import VerticalScroll
from textual.widgets import Input, ListView, Static

from edgeagent.tui import export
from edgeagent.tui.screens.dialogs import Confirm, TextPrompt
from edgeagent.tui.state import AppState
from edgeagent.tui.turn import Turn
from edgeagent.tui.widgets.chat import AnswerView, UserMessage
from edgeagent.tui.widgets.sessions import SessionItem, SessionList

WELCOME = ("Ask a question. The agent answers in steps (Thought, Code, Observation); "
           "open a step to see its code and what it found.\n"
           "Ctrl+P lists every command.")


class ChatsMixin(AppState):
    """The chats list and what acts on the current chat (see the module doc)."""

    def _refresh_sessions(self) -> None:
        self.main.query_one(SessionList).show(self.store.sessions(),
                                         self.session.id if self.session else None)

    def open_session(self, session_id: int | None) -> None:
        self.session = self.store.session(session_id) if session_id is not None else None
        chat = self.main.query_one("#chat", VerticalScroll)
        chat.remove_children()
        widgets: list[Any] = []
        if self.session is None:
            widgets.append(Static(WELCOME, id="welcome"))
        else:
            for m in self.store.messages(self.session.id):
                if m.role == "user":
                    widgets.append(UserMessage(m.content))
                else:
                    turn = Turn.from_stored(m.content, m.status, m.steps)
                    widgets.append(AnswerView(turn, dark=self.current_theme.dark))
        chat.mount_all(widgets)
        chat.scroll_end(animate=False)
        self._refresh_sessions()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        item = event.item
        if isinstance(item, SessionItem) and (self.session is None
                                              or item.session.id != self.session.id):
            if self._run is not None:
                self.notify("An answer is running; Esc stops it.", severity="warning")
                return
            self.open_session(item.session.id)
            self.main.query_one("#prompt", Input).focus()

    def action_new_chat(self) -> None:
        if self._run is not None:
            self.action_cancel()
        self.open_session(None)
        self.main.query_one("#prompt", Input).focus()

    def action_rename_chat(self) -> None:
        session = self.session
        if session is None:
            self.notify("No chat to rename yet.")
            return

        def done(title: str | None) -> None:
            if title:
                self.store.rename_session(session.id, title)
                self.session = self.store.session(session.id)
                self._refresh_sessions()

        self.push_screen(TextPrompt("Rename chat", session.title), done)

    def action_delete_chat(self) -> None:
        session = self.session
        if session is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                if self._run is not None:
                    self.action_cancel()
                self.store.delete_session(session.id)
                self.note(f"deleted chat {session.title!r}")
                self.open_session(None)

        self.push_screen(Confirm(f"Delete the chat {session.title!r}?"), done)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.main.query_one("#sessions")
        sidebar.display = not sidebar.display

    # -- details, copy, export -----------------------------------------------

    def action_toggle_details(self) -> None:
        self._details = not self._details
        for view in self.main.query(AnswerView):
            view.set_collapsed(not self._details)

    def _last_turn(self, want_code: bool) -> str | None:
        if self.session is None:
            return None
        for m in reversed(self.store.messages(self.session.id)):
            if m.role != "assistant":
                continue
            if not want_code and m.status == "done":
                return m.content
            if want_code:
                for s in reversed(m.steps):
                    if s.get("code"):
                        return str(s["code"])
        return None

    def action_copy_answer(self) -> None:
        self._copy(self._last_turn(False), "answer")

    def action_copy_code(self) -> None:
        self._copy(self._last_turn(True), "code block")

    def _copy(self, text: str | None, what: str) -> None:
        if text is None:
            self.notify(f"No {what} to copy yet.")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last {what} ({len(text)} characters).")

    def _export(self, kind: str) -> Path | None:
        if self.session is None:
            self.notify("Nothing to export yet: ask something first.")
            return None
        messages = self.store.messages(self.session.id)
        if kind == "md":
            text, suffix = export.chat_markdown(self.session, messages), ".md"
        else:
            text, suffix = export.trajectories_jsonl(messages), ".jsonl"
        try:
            path = export.write_export(self.config.exports(),
                                       export.export_name(self.session, suffix), text)
        except OSError as exc:
            self.notify(f"Export failed: {exc}", severity="error")
            return None
        self.note(f"exported {path}")
        self.notify(f"Saved {path}", title="Export", timeout=8)
        return path

    def action_export_markdown(self) -> None:
        self._export("md")

    def action_export_jsonl(self) -> None:
        self._export("jsonl")
