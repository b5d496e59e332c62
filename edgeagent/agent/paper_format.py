"""The paper's released trajectories (smolagents `log_data`) as our chat messages.

`log_data["messages"]` holds roles system/user/assistant/tool-call/
tool-response (sometimes spelled `MessageRole.USER` …) with content as a
string or a list of `{"type": "text", "text": …}` parts. The reference trainer
(`exps_research/train_utils/preprocess.py`) drops tool-call turns, maps
tool-response to user, joins consecutive turns of one role by concatenation,
strips `<reference>…</reference>` from the task, and drops a trailing user
turn; `log_data_messages` does the same, so a released trajectory and one of
our runs with the same steps give identical `messages`.

`with_student_system` puts the student's short system prompt in place of a
chat's system turn, as the reference trainer does for every trajectory
(`messages[0]["content"] = system_prompt_short`), so a student is trained on
exactly the chat the agent loop sends it.

`paper_code_blobs` is the reference's strict step parser (`parse_code_blobs`):
a fenced block closed by `\n```` or a whole output that is valid Python, else
a parse error (an unclosed fence cut by `max_tokens` is one). `distill filter`
uses it; inference stays lenient (`edgeagent.agent.parse`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

from edgeagent.agent.prompts import load_prompts, merge_roles
from edgeagent.engines.base import Message

_ROLES = {"system": "system", "user": "user", "assistant": "assistant",
          "tool-call": "tool-call", "tool-response": "user"}
_REFERENCE = re.compile(r"<reference>.*?</reference>", re.DOTALL)


def _role(raw: Any) -> str:
    name = str(raw)
    if name.startswith("MessageRole."):
        name = name[len("MessageRole."):].lower().replace("_", "-")
    if name not in _ROLES:
        raise ValueError(f"unknown role {raw!r} in log_data")
    return _ROLES[name]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [p for p in content if isinstance(p, Mapping) and p.get("type") == "text"]
        return str(parts[0].get("text", "")) if parts else ""
    raise ValueError("message content must be a string or a list of parts")


def log_data_messages(log_data: Mapping[str, Any]) -> list[Message]:
    """The training chat of one released trajectory."""
    raw = log_data.get("messages")
    if not isinstance(raw, Sequence):
        raise ValueError("log_data has no messages list")
    chat: list[Message] = []
    for m in raw:
        role = _role(m.get("role"))
        if role == "tool-call":
            continue
        chat.append({"role": role, "content": _text(m.get("content"))})
    chat = merge_roles(chat)
    if len(chat) > 1 and chat[1]["role"] == "user":
        chat[1] = {"role": "user", "content": _REFERENCE.sub("", chat[1]["content"])}
    if chat and chat[-1]["role"] == "user":
        chat = chat[:-1]
    return chat


def with_student_system(messages: Sequence[Message]) -> list[Message]:
    """`messages` with the student's system prompt as the first turn (added if absent)."""
    system: Message = {"role": "system", "content": load_prompts().system("student")}
    rest = list(messages[1:] if messages and messages[0]["role"] == "system" else messages)
    return [system, *(Message(role=m["role"], content=m["content"]) for m in rest)]


PAPER_CODE_BLOB = re.compile(r"```(?:py|python)?\n(.*?)\n```", re.DOTALL)


def paper_code_blobs(text: str) -> str | None:
    """The code the reference agent would run for `text`, or None for its parse error."""
    matches = PAPER_CODE_BLOB.findall(text)
    if matches:
        return "\n\n".join(m.strip() for m in matches)
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return text
