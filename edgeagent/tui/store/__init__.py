"""Chat history in SQLite: sessions and their messages (see `db.Store`)."""

from edgeagent.tui.store.db import Session, Store, StoredMessage

__all__ = ["Session", "Store", "StoredMessage"]
