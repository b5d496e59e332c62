"""Turning model values into what the host receives: capped text and plain JSON.

`clean` caps a string and makes it encodable, `safe_repr` is a repr that
never raises, `to_wire` turns a final answer into JSON types (numpy values
converted) or, failing that, its repr.

Not covered: running code (`session`), the frames themselves (`protocol`).
"""

from __future__ import annotations

import json
from typing import Any

from edgeagent.tools.sandbox.policy import NO_VALUE


def clean(text: str, limit: int) -> str:
    """Cap `text` and replace lone surrogates so it encodes as UTF-8."""
    if len(text) > limit:
        text = text[:limit] + f"... [truncated, {len(text) - limit} more characters]"
    return text.encode("utf-8", "replace").decode("utf-8")

def safe_repr(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}: {exc}>"
    if not isinstance(text, str):  # pragma: no cover - repr always returns str
        text = "<unrepresentable>"
    return clean(text, limit)

def plain(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON types, or NO_VALUE."""
    if depth > 20:
        return NO_VALUE
    if value is None or isinstance(value, bool):
        return value if value is None else bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value).encode("utf-8", "replace").decode("utf-8")
    module = getattr(type(value), "__module__", "") or ""
    if module.startswith("numpy"):
        if hasattr(value, "tolist") and getattr(value, "size", 0) <= 10_000:
            return plain(value.tolist(), depth + 1)
        return NO_VALUE
    if isinstance(value, (list, tuple)):
        items = [plain(v, depth + 1) for v in value]
        return NO_VALUE if any(v is NO_VALUE for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out = {str(k): plain(v, depth + 1) for k, v in value.items()}
        return NO_VALUE if any(v is NO_VALUE for v in out.values()) else out
    return NO_VALUE

def to_wire(value: Any, limit: int) -> Any:
    """A final answer for the host: the value if JSON-able and small, else its repr."""
    try:
        data = plain(value)
        if data is not NO_VALUE and len(json.dumps(data, allow_nan=False)) <= limit:
            return data
    except (ValueError, TypeError, RecursionError, OverflowError):
        pass
    return safe_repr(value, limit)

