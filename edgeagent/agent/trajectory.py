"""The trajectory record and its JSON Lines file: the one schema everything uses.

A record is one task: `{id, question, gold?, dataset?, model, engine,
prompt_version, steps: [{thought, code, observation, error, final,
candidates?: [{text, key, ok, error?, cut?}], votes?}], answer, score?, tokens:
{prompt, completion}, timings, messages, ftp_prefix?}` (docs/architecture.md).
`messages` is the
exact chat a student is trained on: system, `New task:` turn, then assistant
turns (ending ```` ```<end_code> ````) and observation turns, without the
observation after the last action. Extra fields kept: per step `text` (the raw
chosen output), `final_answer`, `chosen`, `timings`; per record
`from_fallback`, `error`, `cancelled`, `retrieval`, `straggler` (voting runs).

Files: `append_records` writes whole lines (one `write` per record, then
fsync) and first cuts off a half-written last line left by a kill, so a
resumed run appends cleanly; `read_records` skips such a torn last line and
raises `UserError` (with the line number) for any other bad line. `done_ids`
lists what a resumed run can skip.

Not covered: the paper's released `log_data` format (see `paper_format`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.engines.base import Message
from edgeagent.errors import UserError


@dataclass
class CandidateRecord:
    text: str
    key: str
    ok: bool
    error: str | None = None
    cut: bool = False  # stopped by the straggler policy before it finished

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "key": self.key, "ok": self.ok}
        if self.error is not None:
            d["error"] = self.error
        if self.cut:
            d["cut"] = True
        return d


@dataclass
class StepRecord:
    thought: str
    code: str | None
    observation: str
    error: str | None = None
    final: bool = False
    final_answer: Any = None
    text: str = ""  # the chosen raw model output
    candidates: list[CandidateRecord] | None = None
    votes: dict[str, list[int]] | None = None  # vote key -> candidate indexes
    chosen: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "thought": self.thought, "code": self.code, "observation": self.observation,
            "error": self.error, "final": self.final, "final_answer": self.final_answer,
            "text": self.text, "timings": self.timings,
        }
        if self.candidates is not None:
            d["candidates"] = [c.to_dict() for c in self.candidates]
            d["votes"] = self.votes or {}
            d["chosen"] = self.chosen
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRecord:
        cands = d.get("candidates")
        return cls(
            thought=str(d.get("thought", "")), code=d.get("code"),
            observation=str(d.get("observation", "")), error=d.get("error"),
            final=bool(d.get("final", False)), final_answer=d.get("final_answer"),
            text=str(d.get("text", "")),
            candidates=None if cands is None else [
                CandidateRecord(text=str(c.get("text", "")), key=str(c.get("key", "")),
                                ok=bool(c.get("ok", False)), error=c.get("error"),
                                cut=bool(c.get("cut", False)))
                for c in cands
            ],
            votes=d.get("votes"), chosen=d.get("chosen"), timings=dict(d.get("timings") or {}),
        )


_REQUIRED = ("id", "question", "model", "engine", "prompt_version", "steps", "answer",
             "messages")


@dataclass
class Trajectory:
    id: str
    question: str
    model: str
    engine: str
    prompt_version: str
    steps: list[StepRecord] = field(default_factory=list)
    answer: str | None = None
    messages: list[Message] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "completion": 0})
    timings: dict[str, Any] = field(default_factory=dict)
    gold: Any = None
    dataset: str | None = None
    score: float | None = None
    ftp_prefix: str | None = None
    from_fallback: bool = False
    error: str | None = None
    cancelled: bool = False
    retrieval: str | None = None  # the wiki's retrieval profile (bm25, bm25+rerank, ...)
    retrieval_settings: dict[str, Any] | None = None  # its depth, links, model (WikiIndex)
    straggler: str | None = None  # voting runs: quorum or wait (None: one vote)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "question": self.question, "model": self.model,
            "engine": self.engine, "prompt_version": self.prompt_version,
            "steps": [s.to_dict() for s in self.steps], "answer": self.answer,
            "tokens": dict(self.tokens), "timings": self.timings,
            "messages": [{"role": m["role"], "content": m["content"]} for m in self.messages],
            "from_fallback": self.from_fallback,
        }
        for key in ("gold", "dataset", "score", "ftp_prefix", "error", "retrieval",
                    "retrieval_settings", "straggler"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.cancelled:
            d["cancelled"] = True
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=repr)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        if not isinstance(d, dict):
            raise ValueError("a trajectory record must be a JSON object")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"missing field(s): {', '.join(missing)}")
        messages: list[Message] = []
        for m in d["messages"]:
            if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)):
                raise ValueError("messages must be {role, content} strings")
            messages.append({"role": m["role"], "content": m["content"]})
        return cls(
            id=str(d["id"]), question=str(d["question"]), model=str(d["model"]),
            engine=str(d["engine"]), prompt_version=str(d["prompt_version"]),
            steps=[StepRecord.from_dict(s) for s in d["steps"]],
            answer=None if d["answer"] is None else str(d["answer"]), messages=messages,
            tokens=dict(d.get("tokens") or {}), timings=dict(d.get("timings") or {}),
            gold=d.get("gold"), dataset=d.get("dataset"), score=d.get("score"),
            ftp_prefix=d.get("ftp_prefix"), from_fallback=bool(d.get("from_fallback", False)),
            error=d.get("error"), cancelled=bool(d.get("cancelled", False)),
            retrieval=d.get("retrieval"), straggler=d.get("straggler"),
            retrieval_settings=(dict(d["retrieval_settings"])
                                if isinstance(d.get("retrieval_settings"), dict) else None),
        )


def _cut_torn_tail(path: Path) -> None:
    """Remove a last line that has no newline (a record half-written when killed)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        block = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                fh.truncate(start + nl + 1)
                return
            pos = start
        fh.truncate(0)


def append_records(path: str | os.PathLike[str], records: Iterable[Trajectory]) -> int:
    """Append whole records, one line each; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _cut_torn_tail(path)
    n = 0
    with open(path, "a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.to_json() + "\n")
            fh.flush()
            n += 1
        os.fsync(fh.fileno())
    return n


def append_record(path: str | os.PathLike[str], record: Trajectory) -> None:
    append_records(path, [record])


def iter_records(path: str | os.PathLike[str]) -> Iterator[Trajectory]:
    """Records of a JSON Lines file; a torn last line is skipped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read trajectories {path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = Trajectory.from_dict(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError,
                AttributeError, KeyError) as exc:
            if torn_tail and number == len(lines):
                return
            raise UserError(f"{path}:{number}: not a trajectory record ({exc})") from None
        yield rec


def read_records(path: str | os.PathLike[str]) -> list[Trajectory]:
    return list(iter_records(path))


def done_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids already in the file (empty when it does not exist): what a resume skips."""
    if not Path(path).exists():
        return set()
    return {rec.id for rec in iter_records(path)}
