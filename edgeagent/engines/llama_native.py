"""Thin, typed access to llama.cpp through llama-cpp-python's ctypes layer.

Covers: loading a GGUF with a one-line error on failure (missing file, not a
GGUF, truncated, unknown architecture — the reason comes from llama.cpp's own
log, captured here per thread: llama.cpp logs from the thread that called it,
so two models loading in two eval threads each read their own reason),
loading and applying a LoRA adapter GGUF (same errors, plus a wrong
architecture or shapes for the model), tokenizing, detokenizing
single tokens, GGUF metadata, and sampler chains. The engine (`llamacpp.py`)
builds on this; nothing here knows about prompts or chats.

Not covered: GPU offload, multimodal projectors, embeddings.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError

_log_lock = threading.Lock()
_log_lines: dict[int, deque[str]] = {}  # thread id -> its last llama.cpp log lines
_verbose = False
_callback: Any = None
_backend_ready = False


def _llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UserError(
            f"llama-cpp-python is not installed ({exc}); run packaging/install.sh"
        ) from None
    return llama_cpp


def init_backend(verbose: bool = False) -> Any:
    """Import llama_cpp once, route its log through us, init the backend."""
    global _callback, _backend_ready, _verbose
    llama_cpp = _llama()
    _verbose = verbose
    if _callback is None:

        @llama_cpp.llama_log_callback
        def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            line = text.decode("utf-8", errors="replace")
            with _log_lock:
                lines = _log_lines.get(threading.get_ident())
                if lines is None:
                    if len(_log_lines) > 256:  # threads come and go: forget the dead ones
                        alive = {t.ident for t in threading.enumerate()}
                        for ident in [i for i in _log_lines if i not in alive]:
                            del _log_lines[ident]
                    lines = _log_lines[threading.get_ident()] = deque(maxlen=50)
                lines.append(line)
            if _verbose:
                print(line, end="", file=sys.stderr, flush=True)

        _callback = _on_log
    # set every time: llama_cpp.Llama (used by bench and the server) installs its own
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _backend_ready = True
    return llama_cpp


def clear_log() -> None:
    """Forget this thread's captured log lines (before a call whose failure we explain)."""
    with _log_lock:
        _log_lines.pop(threading.get_ident(), None)


def last_error() -> str:
    """The reason for the last failure llama.cpp logged in this thread."""
    with _log_lock:
        lines = [ln.strip() for ln in _log_lines.get(threading.get_ident(), ()) if ln.strip()]
    for line in reversed(lines):
        if "error loading model: " in line:
            return line.split("error loading model: ", 1)[1]
    for line in reversed(lines):
        low = line.lower()
        if "error" in low or "failed" in low or "unknown" in low or "invalid" in low:
            return line.split(": ", 1)[-1] if line.startswith("llama_") else line
    return lines[-1] if lines else "llama.cpp gave no reason"


_last_error = last_error  # the name other modules used before it was public


def check_gguf_header(path: Path, what: str = "model file") -> None:
    """Fail in one line unless `path` is an existing, non-empty GGUF file."""
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a GGUF file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise UserError(f"{path} is not a GGUF file (bad magic {magic!r})")


def load_model(path: Path, *, vocab_only: bool = False, lora: Path | None = None,
               repack: bool = True) -> Any:
    """A `llama_model_p`; raises UserError with llama.cpp's reason on failure.

    `repack=False` keeps the weights in their file layout; by default llama.cpp
    may repack them for the CPU's wide kernels (Q4_0, Q8_0, IQ4_NL on AVX2)."""
    check_gguf_header(path)
    llama_cpp = init_backend(_verbose)
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.vocab_only = vocab_only
    if hasattr(params, "use_extra_bufts"):  # llama.cpp's repacked CPU weight layouts
        params.use_extra_bufts = repack
    clear_log()
    model = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        raise UserError(f"cannot load {path.name}: {last_error()}")
    return model


def load_lora(model: Any, path: Path) -> Any:
    """A `llama_adapter_lora_p` for `model`; UserError with llama.cpp's reason (other
    architecture, shapes that do not fit, not an adapter) on failure. Free it with
    `llama_adapter_lora_free` before the model (or let the model free it)."""
    check_gguf_header(path, "LoRA adapter")
    llama_cpp = init_backend(_verbose)
    clear_log()
    adapter = llama_cpp.llama_adapter_lora_init(model, os.fsencode(path))
    if not adapter:
        reason = last_error().removeprefix("failed to apply lora adapter: ")
        raise UserError(f"cannot apply the LoRA adapter {path.name}: {reason}")
    return adapter


def set_lora(ctx: Any, adapter: Any, scale: float) -> None:
    """Use `adapter` at `scale` for every decode on `ctx`."""
    llama_cpp = _llama()
    clear_log()
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(scale)
    if llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales) != 0:
        raise UserError(f"llama.cpp refused the LoRA adapter: {last_error()}")


def meta(model: Any, key: str) -> str | None:
    llama_cpp = _llama()
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        llama_cpp.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")


def chat_template(model: Any) -> str | None:
    raw = _llama().llama_model_chat_template(model, None)
    return raw.decode("utf-8", errors="replace") if raw else None


def tokenize(vocab: Any, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
    llama_cpp = _llama()
    data = text.encode("utf-8")
    cap = len(data) + 8
    arr = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        arr = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, add_special, parse_special)
    return list(arr[:n])


class Detokenizer:
    """Token id -> bytes, cached per id (pieces never change)."""

    def __init__(self, vocab: Any, *, special: bool = False) -> None:
        self._llama = _llama()
        self._vocab = vocab
        self._special = special
        self._cache: dict[int, bytes] = {}
        self._buf = ctypes.create_string_buffer(256)

    def piece(self, token: int) -> bytes:
        got = self._cache.get(token)
        if got is not None:
            return got
        n = self._llama.llama_token_to_piece(
            self._vocab, token, self._buf, len(self._buf), 0, self._special
        )
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = self._llama.llama_token_to_piece(
                self._vocab, token, big, len(big), 0, self._special
            )
            out = big.raw[:n]
        else:
            out = self._buf.raw[:n]
        self._cache[token] = out
        return out

    def text(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")


def token_text(vocab: Any, token: int) -> str:
    """The special-token text of `token` (e.g. '<|im_end|>'), '' if none."""
    if token < 0:
        return ""
    return Detokenizer(vocab, special=True).piece(token).decode("utf-8", errors="replace")


def sampler_chain(
    *, temperature: float, top_p: float, top_k: int, seed: int
) -> Any:
    """A native sampler chain: greedy at temperature 0, else top-k → temp → top-p → dist."""
    llama_cpp = _llama()
    params = llama_cpp.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = llama_cpp.llama_sampler_chain_init(params)
    if temperature <= 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(top_k))
    # temperature before top-p, as vLLM and transformers do (the paper's sampler)
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(temperature))
    if 0 < top_p < 1:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
    llama_cpp.llama_sampler_chain_add(
        chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF)
    )
    return chain
