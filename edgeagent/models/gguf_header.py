"""A fast GGUF header reader: the scalar and string metadata, and a size check.

`read_header(path)` parses the GGUF v2/v3 header with `struct` on a memory
map: every key/value pair (arrays are skipped, not decoded: a 150k-token
vocabulary costs milliseconds, where `gguf.GGUFReader` takes seconds), then
the tensor infos, and checks that every tensor's bytes lie inside the file —
so a truncated download is refused. Not covered: decoding arrays, big-endian
files.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise ValueError("unexpected end of file in the header")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("unexpected end of file in a string")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            n = self.take("<Q")
            self.pos += n
        if self.pos > len(self.buf):
            raise ValueError("unexpected end of file in an array")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.take("<I"), self.take("<Q")
            if etype == _STRING:
                self.skip_strings(count)
            elif etype in _SCALARS:
                self.pos += struct.calcsize(_SCALARS[etype]) * count
            else:  # nested arrays do not occur in llama.cpp files
                raise ValueError(f"unsupported array element type {etype}")
            return None
        raise ValueError(f"unknown value type {vtype}")


def read_header(path: Path) -> dict[str, Any]:
    """The file's scalar/string metadata; UserError for a damaged or truncated file."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf)
    except (OSError, ValueError, struct.error, OverflowError) as exc:
        raise UserError(f"{path.name} is not a readable GGUF file ({exc})") from None


def _parse(buf: Any) -> dict[str, Any]:
    import gguf

    cur = _Cursor(buf)
    if bytes(buf[:4]) != b"GGUF":
        raise ValueError("bad magic")
    cur.pos = 4
    version = cur.take("<I")
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    n_tensors, n_kv = cur.take("<Q"), cur.take("<Q")
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        fields[key] = cur.value(cur.take("<I"))
    end = 0
    for _ in range(n_tensors):
        cur.string()
        n_dims = cur.take("<I")
        dims = [cur.take("<Q") for _ in range(n_dims)]
        ttype, offset = cur.take("<I"), cur.take("<Q")
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        count = 1
        for d in dims:
            count *= d
        end = max(end, offset + count // block * type_size)
    align = int(fields.get("general.alignment") or 32)
    data_start = (cur.pos + align - 1) // align * align
    if n_tensors and data_start + end > len(buf):
        raise ValueError(f"truncated: tensor data needs {data_start + end} bytes, "
                         f"the file has {len(buf)}")
    return fields
