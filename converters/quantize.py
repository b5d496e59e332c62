"""Quantize a GGUF file through llama.cpp (`llama_cpp.llama_model_quantize`).

`quantize_gguf(src, type="Q4_K_M")` writes `<stem>.<type>.gguf` next to the
source (or `out`), atomically. llama.cpp's log is captured rather than
printed: its per-tensor lines drive the progress callback, and its "fallback
quantization" lines are counted (K-quants need rows that are a multiple of
256: SmolLM2's 576-wide rows fall back to Q5_0/Q8_0, for example). The result
also carries the written file's tensor-type histogram.

Not covered: importance matrices (imatrix), per-tensor type overrides, split
files. Needs llama-cpp-python; the CLI says so when it is missing.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.atomic import atomic_output
from edgeagent.errors import UserError

Progress = Callable[[int, int, str], None]  # (tensors done, tensors total, tensor name)

# CLI name -> llama_cpp constant name
QUANT_TYPES: dict[str, str] = {
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
    "Q3_K_S": "LLAMA_FTYPE_MOSTLY_Q3_K_S",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q3_K_L": "LLAMA_FTYPE_MOSTLY_Q3_K_L",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
}

_PROGRESS_RE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_FALLBACK_RE = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback")
_LOCK = threading.Lock()  # llama.cpp's log callback is process-global


@dataclass(frozen=True)
class QuantizeResult:
    """What llama.cpp wrote."""

    path: Path
    qtype: str
    seconds: float
    n_bytes: int
    n_fallback: int
    type_counts: dict[str, int] = field(default_factory=dict)
    log_tail: tuple[str, ...] = ()


def _normalise_type(qtype: str) -> str:
    key = qtype.upper().replace("-", "_")
    if key not in QUANT_TYPES:
        choices = ", ".join(QUANT_TYPES)
        raise UserError(f"unknown quantization type {qtype!r}; choose from {choices}")
    return key


def default_output(src: Path, qtype: str) -> Path:
    stem = src.name[: -len(".gguf")] if src.name.endswith(".gguf") else src.name
    for suffix in (".f16", ".F16", ".f32", ".F32", ".bf16", ".BF16"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return src.with_name(f"{stem}.{qtype}.gguf")


def tensor_type_counts(path: Path) -> dict[str, int]:
    """Histogram of tensor types in a GGUF file (header only)."""
    import gguf

    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(path).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts


def quantize_gguf(
    src: Path | str,
    qtype: str = "Q4_K_M",
    *,
    out: Path | str | None = None,
    threads: int | None = None,
    allow_requantize: bool = False,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize `src` to `qtype` with llama.cpp; return what was written."""
    src = Path(src)
    key = _normalise_type(qtype)
    if not src.is_file():
        raise UserError(f"{src} does not exist")
    with src.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{src} is not a GGUF file")
    dest = Path(out) if out is not None else default_output(src, key)
    if dest.resolve() == src.resolve():
        raise UserError("the output would overwrite the input; pass --out")
    try:
        import llama_cpp
    except ImportError as exc:
        raise UserError(f"quantizing needs llama-cpp-python ({exc})") from None

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[key])
    params.nthread = threads if threads is not None else (os.cpu_count() or 1)
    params.allow_requantize = allow_requantize

    lines: list[str] = []
    partial: list[str] = []

    def on_log(level: int, text: bytes, user_data: Any) -> None:
        partial.append(text.decode("utf-8", errors="replace"))
        joined = "".join(partial)
        if "\n" not in joined:
            return
        *done, rest = joined.split("\n")
        partial[:] = [rest]
        for line in done:
            lines.append(line)
            m = _PROGRESS_RE.search(line)
            if m and progress is not None:
                progress(int(m.group(1)), int(m.group(2)), m.group(3))

    callback = llama_cpp.llama_log_callback(on_log)
    started = time.perf_counter()
    with _LOCK, atomic_output(dest) as tmp:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            rc = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        finally:
            _restore_default_log()
        if rc != 0:
            reason = next(
                (ln.strip() for ln in reversed(lines) if "error" in ln.lower() or "fail" in ln),
                "see the llama.cpp log",
            )
            if "requantiz" in " ".join(lines).lower() and not allow_requantize:
                reason = f"{src.name} is already quantized; pass --allow-requantize"
            raise UserError(f"llama.cpp could not quantize {src}: {reason}")
    seconds = time.perf_counter() - started
    n_fallback = 0
    for ln in lines:
        m = _FALLBACK_RE.search(ln)
        if m:
            n_fallback = int(m.group(1))
    return QuantizeResult(
        path=dest,
        qtype=key,
        seconds=seconds,
        n_bytes=dest.stat().st_size,
        n_fallback=n_fallback,
        type_counts=tensor_type_counts(dest),
        log_tail=tuple(lines[-20:]),
    )


def _restore_default_log() -> None:
    try:
        from llama_cpp import _logger
    except ImportError:
        return
    import llama_cpp

    llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
