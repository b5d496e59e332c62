"""`distill import`: the paper's released trajectories (smolagents `log_data`) into our schema.

Input: JSON Lines (or one JSON list) of the reference code's result entries,
`{model_id, question, generated_answer, true_answer | answer, log_data, score?}`,
where `log_data` is a dict or, as on the Hugging Face Hub, a JSON string whose
`messages` carry roles system/user/assistant/tool-call/tool-response.
`edgeagent.agent.paper_format.log_data_messages` makes the training chat (the
reference trainer's cleaning); the system turn is then replaced by our student
system prompt, as the reference trainer does (`keep_system=True` keeps theirs).
Steps are rebuilt from the chat: each assistant turn parsed into thought and
code, the user turn after it as its observation (`Error:` turns as errors).

Entries with an empty `log_data` (the reference's failed runs) are skipped
and counted; a malformed line is a `UserError` naming its line number.

Not covered: the planning-step chats in `original_memory` (the reference adds
them as extra examples when planning was on), candidates and votes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeagent.agent.paper_format import log_data_messages, with_student_system
from edgeagent.agent.parse import parse_action
from edgeagent.agent.prompts import load_prompts
from edgeagent.agent.trajectory import StepRecord, Trajectory
from edgeagent.engines.base import Message
from edgeagent.errors import UserError

IMPORT_ENGINE = "smolagents-log_data"
_ERROR_TURN = re.compile(r"(?:^|\n)Error:\n(.*?)(?:\nNow let's retry|\Z)", re.DOTALL)


def _entries(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not JSON ({exc})") from None
        yield from enumerate(data, 1)
        return
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not a JSON line ({exc.msg})") from None


def _steps(messages: list[Message]) -> list[StepRecord]:
    steps: list[StepRecord] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or i < 2:
            continue
        action = parse_action(m["content"])
        nxt = messages[i + 1]["content"] if i + 1 < len(messages) else ""
        err = _ERROR_TURN.search(nxt)
        final = action.code is not None and "final_answer(" in action.code
        steps.append(StepRecord(
            thought=action.thought, code=action.code, observation=nxt,
            error=action.error or (err.group(1).strip() if err else None),
            final=final and i + 1 >= len(messages), text=m["content"],
        ))
    return steps


def import_entry(entry: Any, *, dataset: str | None = None,
                 keep_system: bool = False) -> Trajectory | None:
    """One released entry as a trajectory; None when it has no log."""
    if not isinstance(entry, dict):
        raise ValueError("an entry must be a JSON object")
    log = entry.get("log_data")
    if isinstance(log, str):
        log = json.loads(log) if log.strip() else None
    if not log:
        return None
    chat = log_data_messages(log)
    if len(chat) < 3 or chat[0]["role"] != "system" or chat[1]["role"] != "user":
        raise ValueError("log_data messages must start system, user and hold an assistant turn")
    prompts = load_prompts()
    if not keep_system:
        chat = with_student_system(chat)
    question = str(entry.get("question") or chat[1]["content"])
    gold = entry.get("true_answer", entry.get("answer"))
    answer = entry.get("generated_answer")
    score = entry.get("score")
    tid = str(entry.get("id") or "") or "import-" + hashlib.sha1(
        question.encode("utf-8")).hexdigest()[:12]
    steps = _steps(chat)
    if steps and answer is not None and steps[-1].final:
        steps[-1].final_answer = answer
    return Trajectory(
        id=tid, question=question, model=str(entry.get("model_id") or "imported"),
        engine=IMPORT_ENGINE,
        prompt_version=prompts.version if not keep_system else "smolagents-original",
        steps=steps, answer=None if answer is None else str(answer), messages=chat,
        tokens={"prompt": 0, "completion": 0}, timings={}, gold=gold, dataset=dataset,
        score=None if score is None else float(score),
    )


def import_log_data(
    path: Path, *, dataset: str | None = None, keep_system: bool = False
) -> tuple[list[Trajectory], int]:
    """All trajectories of a released file, and how many entries had no log."""
    out: list[Trajectory] = []
    empty = 0
    for number, entry in _entries(path):
        try:
            traj = import_entry(entry, dataset=dataset, keep_system=keep_system)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UserError(f"{path}:{number}: not a smolagents log entry ({exc})") from None
        if traj is None:
            empty += 1
        else:
            out.append(traj)
    return out, empty
