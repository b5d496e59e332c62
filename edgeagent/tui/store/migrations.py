"""Versioned schema migrations of the history DB.

`MIGRATIONS[i]` takes the schema from version `i` to `i + 1`; the version
lives in `PRAGMA user_version`. Append new steps; never edit a released one.

Not covered: downgrades (a DB from a newer edgeagent is refused, not changed).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: sessions and messages
    """
    CREATE TABLE sessions (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        title    TEXT NOT NULL,
        created  TEXT NOT NULL,
        updated  TEXT NOT NULL,
        model    TEXT NOT NULL DEFAULT '',
        wiki     TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        role       TEXT NOT NULL,
        content    TEXT NOT NULL DEFAULT '',
        status     TEXT NOT NULL DEFAULT 'done',
        created    TEXT NOT NULL,
        steps      TEXT
    );
    """,
    # 1 -> 2: the trajectory record of an answer, and a lookup index
    """
    ALTER TABLE messages ADD COLUMN record TEXT;
    CREATE INDEX messages_by_session ON messages(session_id, id);
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
