"""The history store: migrations, CRUD, and no loss on SIGKILL mid-answer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeagent.errors import UserError
from edgeagent.tui.store import Store
from edgeagent.tui.store.migrations import MIGRATIONS, SCHEMA_VERSION


def test_new_db_is_wal_and_current(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    assert store.version == SCHEMA_VERSION
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migrates_an_old_db_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
    db.execute("INSERT INTO sessions (title, created, updated) VALUES ('old', 'x', 'x')")
    db.execute("INSERT INTO messages (session_id, role, content, created) "
               "VALUES (1, 'user', 'hello', 'x')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.version == SCHEMA_VERSION
    [session] = store.sessions()
    [msg] = store.messages(session.id)
    assert (session.title, msg.content, msg.record) == ("old", "hello", None)
    store.update_message(msg.id, record={"id": "r"})
    assert store.messages(session.id)[0].record == {"id": "r"}


def test_newer_or_corrupt_db_is_a_one_line_error(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UserError, match="newer edgeagent"):
        Store(newer)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="move it aside"):
        Store(junk)


def test_sessions_crud_and_cascade(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    a = store.create_session("a", model="m", wiki="starter")
    b = store.create_session("b")
    mid = store.add_message(a.id, "user", "q", steps=None)
    store.add_message(a.id, "assistant", "", status="streaming")
    store.update_message(mid + 1, content="ans", status="done", steps=[{"step": 1}])
    assert [m.status for m in store.messages(a.id)] == ["done", "done"]
    assert store.messages(a.id)[1].steps == [{"step": 1}]
    assert store.sessions()[0].id == a.id  # most recently updated first
    store.rename_session(b.id, "bee")
    assert store.session(b.id).title == "bee"  # type: ignore[union-attr]
    store.delete_session(a.id)
    assert store.messages(a.id) == [] and [s.title for s in store.sessions()] == ["bee"]
    with pytest.raises(ValueError):
        store.add_message(b.id, "user", "x", status="weird")


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from edgeagent.tui.store import Store

    store = Store(Path(sys.argv[1]))
    s = store.create_session("killed chat")
    store.add_message(s.id, "user", "first question")
    store.add_message(s.id, "assistant", "first answer")
    store.add_message(s.id, "user", "second question")
    mid = store.add_message(s.id, "assistant", "", status="streaming")
    text = ""
    i = 0
    while True:  # an answer streaming forever, saved as the app does
        text += f"tok{i} "
        store.update_message(mid, content=text, steps=[{"step": 1, "thought": text}])
        if i == 20:
            print("streaming", flush=True)
        i += 1
        time.sleep(0.005)
""")


def test_sigkill_mid_answer_loses_no_earlier_message(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "streaming"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    store = Store(path)
    [session] = store.sessions()
    msgs = store.messages(session.id)
    assert [(m.role, m.content, m.status) for m in msgs[:3]] == [
        ("user", "first question", "done"), ("assistant", "first answer", "done"),
        ("user", "second question", "done")]
    partial = msgs[3]
    assert partial.status == "streaming" and partial.content.startswith("tok0 tok1 ")
    assert partial.steps[0]["thought"] == partial.content
