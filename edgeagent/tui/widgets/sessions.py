"""`SessionList`: the chats in the history DB, newest first."""

from __future__ import annotations

from textual.widgets import Label, ListItem, ListView

from edgeagent.tui.store import Session


class SessionItem(ListItem):
    def __init__(self, session: Session) -> None:
        super().__init__(Label(session.title, markup=False))
        self.session = session


class SessionList(ListView):
    def show(self, sessions: list[Session], current: int | None) -> None:
        self.clear()
        items = [SessionItem(s) for s in sessions]
        self.extend(items)
        for i, item in enumerate(items):
            if item.session.id == current:
                self.index = i
