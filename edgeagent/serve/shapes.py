"""The OpenAI response bodies: chat completion, stream chunk, usage, model list.

Plain dicts, built in one place so streamed and non-streamed answers agree.
`reasoning_field` is `reasoning_content` (Open WebUI, LibreChat, LiteLLM,
DeepSeek) or `reasoning` (vLLM, OpenRouter). Never `tool_calls`: the agent's
tools already ran on the server. Not covered: sending them (the app).
"""

from __future__ import annotations

import time
import uuid
from typing import Any


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def chunk(cid: str, created: int, model: str, delta: dict[str, Any],
          finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    body.update(extra)
    return body


def usage_chunk(cid: str, created: int, model: str, use: dict[str, int]) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": use}


def completion(cid: str, created: int, model: str, content: str, reasoning: str,
               reasoning_field: str, finish_reason: str, use: dict[str, int],
               **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message[reasoning_field] = reasoning
    body: dict[str, Any] = {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": use,
    }
    body.update(extra)
    return body


def model_list(names: list[str], created: int | None = None) -> dict[str, Any]:
    when = int(created if created is not None else time.time())
    return {"object": "list",
            "data": [{"id": n, "object": "model", "created": when, "owned_by": "edgeagent"}
                     for n in names]}
