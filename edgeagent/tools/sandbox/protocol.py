"""Length-prefixed JSON frames over pipes, read with a size bound and a deadline.

Both sides of the host <-> worker channel (and the worker <-> candidate
channels) use these helpers. A frame is a 4-byte big-endian length and that
many bytes of UTF-8 JSON (ASCII-escaped, so any Python string survives). The
reader refuses a frame longer than `max_bytes` before reading it, so a print
bomb or a hostile worker cannot make the host allocate more than the cap.

Not covered: what the messages mean (see `worker` and `host`).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
MAX_ERROR = 4_000  # characters of an error message


def result_bound(max_output_chars: int) -> int:
    """The most bytes one result frame may take: stdout, the last value and the
    final answer are capped at `max_output_chars` each, the error at MAX_ERROR,
    and one character escapes to at most 12 bytes."""
    return 12 * (3 * max_output_chars + 2 * MAX_ERROR) + 4096


class ProtocolError(Exception):
    """The peer sent something we refuse (too long, not JSON, not an object)."""


class ChannelClosed(ProtocolError):
    """The peer closed its end (it exited or crashed)."""


class ChannelTimeout(ProtocolError):
    """The deadline passed before a whole frame arrived or could be written."""


def _wait(fd: int, deadline: float | None, *, write: bool) -> None:
    if deadline is None:
        return
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout("deadline passed")
        try:
            if write:
                _, ready, _ = select.select([], [fd], [], remaining)
            else:
                ready, _, _ = select.select([fd], [], [], remaining)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if ready:
            return


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return HEADER.pack(len(body)) + body


def send(fd: int, message: dict[str, Any], deadline: float | None = None) -> None:
    """Write one frame; with a deadline, `fd` should be non-blocking."""
    data = memoryview(encode(message))
    while data:
        _wait(fd, deadline, write=True)
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            continue
        except BrokenPipeError as exc:
            raise ChannelClosed("peer closed the channel") from exc
        data = data[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        _wait(fd, deadline, write=False)
        try:
            chunk = os.read(fd, min(n, 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise ChannelClosed("peer closed the channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(fd: int, max_bytes: int, deadline: float | None = None) -> dict[str, Any]:
    """Read one frame of at most `max_bytes` bytes of JSON and decode it."""
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if length > max_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_bytes}-byte limit")
    body = _read_exact(fd, length, deadline)
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError("frame is not valid JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message
