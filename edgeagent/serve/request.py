"""The chat completion request: validated from raw JSON into a `ChatRequest`.

Covers the OpenAI fields the agent honours (`model`, `messages`, `stream`,
`stream_options.include_usage`, `temperature`, `top_p`, `max_tokens` /
`max_completion_tokens` per step, `stop` and `seed`) and the edgeagent fields a
client passes through `extra_body` (`votes`, `max_steps`, `wiki`). Fields the
agent has no use for (`tools`, `user`, penalties, …) are accepted and ignored;
`n > 1` is refused (use `votes`). Every problem is a 400 naming its `param`.

The conversation: earlier turns become context for the last user message, with
reasoning that front-ends send back inside assistant messages (`<think>`,
`<details>` blocks, `reasoning_content`) stripped. Not covered: images, audio.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from edgeagent.engines.base import Message
from edgeagent.serve.errors import APIError, bad_request

_REASONING_BLOCKS = re.compile(
    r"<(think|thinking|reasoning|details)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE
)
_OPEN_BLOCK = re.compile(r"<(think|thinking|reasoning)\b[^>]*>.*\Z", re.DOTALL | re.IGNORECASE)
MAX_CONTEXT_CHARS = 4000  # earlier turns kept as context, newest first


@dataclass
class ChatRequest:
    model: str
    messages: list[Message]  # the cleaned conversation (system turns included)
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    votes: int = 1
    max_steps: int | None = None
    wiki: str | None = None  # a name; "" means no search
    wiki_given: bool = False

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def strip_reasoning(text: str) -> str:
    """An assistant message without the reasoning blocks a front-end folded into it."""
    text = _REASONING_BLOCKS.sub("", text)
    return _OPEN_BLOCK.sub("", text).strip()


def _text(content: Any, i: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(f"only text content is supported, not {kind!r}",
                                  f"messages[{i}].content")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise bad_request("content must be a string or a list of text parts",
                      f"messages[{i}].content")


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages must be a non-empty list", "messages")
    out: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise bad_request("each message must be an object", f"messages[{i}]")
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise bad_request(f"unknown role {role!r}", f"messages[{i}].role")
        text = _text(m.get("content"), i)
        if role == "assistant":
            text = strip_reasoning(text)
        if role == "developer":
            role = "system"
        if role == "tool":  # no tool calls are ever sent, so a tool turn is just context
            role = "user"
        out.append({"role": str(role), "content": text})
    if out[-1]["role"] != "user" or not out[-1]["content"].strip():
        raise bad_request("the last message must be a non-empty user message", "messages")
    return out


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise bad_request(f"{key} must be a number from {lo:g} to {hi:g}", key)
    return float(v)


def _int(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad_request(f"{key} must be an integer from {lo} to {hi}", key)
    return v


def parse_chat_request(body: Any, *, max_votes: int = 16, max_steps: int = 20) -> ChatRequest:
    """A `ChatRequest` from the decoded JSON body; `APIError(400)` when it is not one."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required", "model")
    messages = _messages(body.get("messages"))
    if body.get("n") not in (None, 1):
        raise bad_request("n must be 1; use votes for several samples per step", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream must be true or false", "stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise bad_request("stream_options must be an object", "stream_options")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise bad_request("stop must be a string or a list of strings", "stop")
    max_tokens = _int(body, "max_completion_tokens", 1, 1 << 20)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, 1 << 20)
    wiki = body.get("wiki")
    if wiki is not None and wiki is not False and not isinstance(wiki, str):
        raise bad_request("wiki must be an index name, or false for no search", "wiki")
    seed = _int(body, "seed", -(1 << 62), 1 << 62)
    return ChatRequest(
        model=model, messages=messages, stream=stream,
        include_usage=bool(opts.get("include_usage", False)),
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        max_tokens=max_tokens, stop=list(stop), seed=seed,
        votes=_int(body, "votes", 1, max_votes) or 1,
        max_steps=_int(body, "max_steps", 1, max_steps),
        wiki="" if wiki is False else wiki, wiki_given="wiki" in body,
    )


def agent_question(messages: list[Message]) -> str:
    """The task for the agent: the last user message, with earlier turns as context.

    System turns are not passed on (the agent has its own system prompt); the
    earlier user and assistant turns are kept newest first up to
    `MAX_CONTEXT_CHARS`."""
    question = messages[-1]["content"].strip()
    turns: list[str] = []
    used = 0
    for m in reversed(messages[:-1]):
        if m["role"] == "system" or not m["content"].strip():
            continue
        line = f"{m['role']}: {m['content'].strip()}"
        if used + len(line) > MAX_CONTEXT_CHARS:
            break
        turns.append(line)
        used += len(line)
    if not turns:
        return question
    context = "\n".join(reversed(turns))
    return f"Earlier in this conversation:\n{context}\n\nThe question now: {question}"
