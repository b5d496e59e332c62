"""`Store`: sessions and messages in `history.sqlite3` (WAL, autocommit).

Every write is its own committed transaction, so a killed app (even SIGKILL)
keeps each message written before the kill. An answer in progress is a row
with status `streaming`, updated as steps arrive; after a crash it reads back
as an interrupted answer. Steps and trajectory records are JSON text.

Not covered: concurrent writers from several app instances beyond what
SQLite's locking gives (last write wins), full-text search of history.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError
from edgeagent.tui.store.migrations import MIGRATIONS, SCHEMA_VERSION

STATUSES = ("done", "streaming", "cancelled", "error")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


@dataclass
class Session:
    id: int
    title: str
    created: str
    updated: str
    model: str = ""
    wiki: str = ""


@dataclass
class StoredMessage:
    id: int
    session_id: int
    role: str  # "user" | "assistant"
    content: str
    status: str
    created: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] | None = None


class Store:
    """One open history DB; use from one thread (the UI thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=5.0)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as exc:
            raise UserError(
                f"the chat history {path} is unreadable ({exc}); move it aside and restart"
            ) from None

    @property
    def version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply the missing migrations, each in one transaction."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise UserError(
                f"the chat history {self.path} is from a newer edgeagent "
                f"(schema {current} > {SCHEMA_VERSION}); upgrade edgeagent"
            )
        for version in range(current, target):
            script = MIGRATIONS[version]
            self._db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {version + 1};\nCOMMIT;"
            )

    def close(self) -> None:
        self._db.close()

    # -- sessions ------------------------------------------------------------

    def create_session(self, title: str, *, model: str = "", wiki: str = "") -> Session:
        now = _now()
        cur = self._db.execute(
            "INSERT INTO sessions (title, created, updated, model, wiki) VALUES (?, ?, ?, ?, ?)",
            (title, now, now, model, wiki),
        )
        return Session(int(cur.lastrowid or 0), title, now, now, model, wiki)

    def sessions(self) -> list[Session]:
        rows = self._db.execute(
            "SELECT * FROM sessions ORDER BY updated DESC, id DESC"
        ).fetchall()
        return [Session(r["id"], r["title"], r["created"], r["updated"], r["model"], r["wiki"])
                for r in rows]

    def session(self, session_id: int) -> Session | None:
        r = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if r is None:
            return None
        return Session(r["id"], r["title"], r["created"], r["updated"], r["model"], r["wiki"])

    def rename_session(self, session_id: int, title: str) -> None:
        self._db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, session_id))

    def delete_session(self, session_id: int) -> None:
        self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def touch_session(self, session_id: int) -> None:
        self._db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (_now(), session_id))

    # -- messages ------------------------------------------------------------

    def add_message(
        self, session_id: int, role: str, content: str, *, status: str = "done",
        steps: list[dict[str, Any]] | None = None, record: dict[str, Any] | None = None,
    ) -> int:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        cur = self._db.execute(
            "INSERT INTO messages (session_id, role, content, status, created, steps, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, role, content, status, _now(), _dump(steps), _dump(record)),
        )
        self.touch_session(session_id)
        return int(cur.lastrowid or 0)

    def update_message(
        self, message_id: int, *, content: str | None = None, status: str | None = None,
        steps: list[dict[str, Any]] | None = None, record: dict[str, Any] | None = None,
    ) -> None:
        sets: list[str] = []
        values: list[Any] = []
        for column, value in (("content", content), ("status", status),
                              ("steps", _dump(steps)), ("record", _dump(record))):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(value)
        if sets:
            self._db.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?",
                             (*values, message_id))

    def messages(self, session_id: int) -> list[StoredMessage]:
        rows = self._db.execute(
            "SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [
            StoredMessage(r["id"], r["session_id"], r["role"], r["content"], r["status"],
                          r["created"], _load(r["steps"]) or [], _load(r["record"]))
            for r in rows
        ]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _load(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
