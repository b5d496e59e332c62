"""Export a chat as Markdown, and its answers' trajectory records as JSON Lines.

`to_trainer_record` is the one place that maps a stored record to the
trainer's schema; today the stored record already is the trajectory record
(docs/architecture.md), so it only drops UI-only keys. Not covered: importing chats back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edgeagent.tui.store import Session, StoredMessage


def to_trainer_record(record: dict[str, Any]) -> dict[str, Any]:
    """The trainer-schema form of one stored trajectory record."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def trajectories_jsonl(messages: list[StoredMessage]) -> str:
    """One JSON line per answered question that has a trajectory record."""
    lines = [json.dumps(to_trainer_record(m.record), ensure_ascii=False)
             for m in messages if m.role == "assistant" and m.record]
    return "".join(line + "\n" for line in lines)


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def chat_markdown(session: Session, messages: list[StoredMessage]) -> str:
    out = [f"# {session.title}\n"]
    for m in messages:
        if m.role == "user":
            out.append(f"\n## You\n\n{m.content}\n")
            continue
        out.append("\n## edgeagent\n")
        for s in m.steps:
            if not any(s.get(k) for k in ("thought", "code", "observation", "error",
                                          "passages", "total")):
                continue  # a step that only streamed text (plain chat, fallback)
            tally = f" ({s['agree']}/{s['total']} agree)" if s.get("agree") is not None else ""
            out.append(f"\n### Step {s.get('step')}{tally}\n")
            if s.get("thought"):
                out.append(f"\n**Thought:** {s['thought'].strip()}\n")
            if s.get("code"):
                out.append("\n" + _fence(s["code"], "py"))
            if s.get("observation"):
                out.append("\n**Observation:**\n\n" + _fence(s["observation"], "text"))
            if s.get("error"):
                out.append(f"\n**Error:** {s['error']}\n")
            for p in s.get("passages") or []:
                out.append(f"\n> **{p.get('title', '')}** — {p.get('text', '')}\n")
        if m.status == "done":
            out.append(f"\n**Answer:** {m.content}\n")
        else:
            label = {"cancelled": "stopped", "streaming": "interrupted"}.get(m.status, m.status)
            out.append(f"\n*({label})* {m.content}\n")
    return "".join(out)


def export_name(session: Session, suffix: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", session.title.lower()).strip("-")[:40] or "chat"
    return f"chat-{session.id}-{slug}{suffix}"


def write_export(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
