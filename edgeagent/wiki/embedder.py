"""Sentence embeddings on the CPU through llama.cpp (no torch): `GgufEmbedder`.

A BERT-style encoder GGUF (see `converters`: the `bert` architecture) is run by
the same llama.cpp build that runs the agent, with mean pooling inside
llama.cpp. `embed(texts)` tokenizes each text ([CLS] ... [SEP], cut to
`max_tokens`), packs sequences into batches of at most `BATCH_TOKENS` tokens
(attention over a packed batch costs its size squared), encodes each batch in
one `llama_encode` call and returns L2-normalized float32 rows, so a dot
product is the cosine similarity. One thread by default: a query is a few
dozen tokens, and llama.cpp's spinning worker threads lose badly on a busy
2-core machine (measured: 38 ms on 1 thread, 600 ms on 2, under load);
`wiki build --embed` may use more. A query (`query=True`, a few texts) takes
`idle_threads` (2) only when nothing else is runnable on the machine right
now (`runnable_elsewhere`, from `/proc/loadavg`): e5's query p50 drops from
28.5 to 19 ms on an idle 2-core machine, and a busy one keeps one thread.

`model_id` names the model and its exact file (`name@sha256[:16]`); stored
vectors record it, and a different model is refused (`vectors`). The models
are data (`embed_model.EMBED_MODELS`): all-MiniLM-L6-v2 (default) and
multilingual-e5-small, each from a PyPI wheel.

A GGUF may say how its model wants text (keys written by our converters):
`edgeagent.embed.query_prefix` / `passage_prefix` are put before queries
(`embed(..., query=True)`) and passages, `edgeagent.embed.char_map` (JSON,
codepoint -> replacement) is applied first, and `edgeagent.embed.fusion_alpha`
is the model's linear fusion weight (`fusion_alpha`; None when absent).

Not covered: GPU offload, decoder (last-token) embedding models, texts longer
than `max_tokens` beyond truncation.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeagent.engines import llama_native as native
from edgeagent.errors import UserError
from edgeagent.wheelfetch import sha256_file

MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length
# Sequences packed into one encode call share one attention matrix (masked, but computed
# in full), so its cost grows with the square of the batch: keep batches small.
BATCH_TOKENS = 512
MAX_SEQS = 64
QUERY_TEXTS = 4  # at most this many query texts may take the idle threads


def file_id(path: Path) -> str:
    """sha256 of a model file, cached beside it (`.NAME.sha256`, keyed by size and mtime)."""
    st = path.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    side = path.with_name(f".{path.name}.sha256")
    try:
        cached_stamp, digest = side.read_text(encoding="utf-8").split()
        if cached_stamp == stamp and len(digest) == 64:
            return digest
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    with contextlib.suppress(OSError):  # a read-only models dir: hash again next time
        side.write_text(f"{stamp} {digest}\n", encoding="utf-8")
    return digest


def runnable_elsewhere(loadavg: Path = Path("/proc/loadavg")) -> int:
    """Tasks runnable on the machine now besides the caller (Linux: the 4th field of
    /proc/loadavg, which counts the reader too); a large number when unknown."""
    try:
        running = int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 1 << 20
    return max(0, running - 1)


class GgufEmbedder:
    """One embedding GGUF loaded once; thread-safe `embed`."""

    def __init__(self, path: Path | str, *, n_threads: int = 1,
                 max_tokens: int = MAX_TOKENS, idle_threads: int | None = None) -> None:
        self.path = Path(path)
        llama_cpp = native.init_backend(False)
        self._llama = llama_cpp
        self._model = native.load_model(self.path)
        self._ctx: Any = None
        self._batch: Any = None
        try:
            self.architecture = native.meta(self._model, "general.architecture") or "unknown"
            if native.meta(self._model, f"{self.architecture}.pooling_type") is None:
                raise UserError(f"{self.path.name} is not an embedding model "
                                f"({self.architecture} without a pooling type)")
            self.name = native.meta(self._model, "general.name") or self.path.stem
            self.dim = int(llama_cpp.llama_model_n_embd(self._model))
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            n_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
            self.max_tokens = max(8, min(max_tokens, n_train if n_train > 0 else max_tokens))
            self.batch_tokens = max(BATCH_TOKENS, self.max_tokens)
            self._sep = int(llama_cpp.llama_vocab_sep(self._vocab))
            self._read_text_keys()
            threads = max(1, n_threads)
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = self.batch_tokens
            params.n_batch = self.batch_tokens
            params.n_ubatch = self.batch_tokens
            params.n_seq_max = MAX_SEQS
            params.n_threads = threads
            params.n_threads_batch = threads
            params.embeddings = True
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise UserError(f"cannot create an embedding context for {self.path.name}: "
                                f"{native._last_error()}")
            self._mem = llama_cpp.llama_get_memory(self._ctx)
            self._batch = llama_cpp.llama_batch_init(self.batch_tokens, 0, 1)
        except BaseException:
            self.close()
            raise
        self.n_threads = threads
        cpus = os.cpu_count() or 1
        self.idle_threads = max(threads, min(cpus, 2 if idle_threads is None else idle_threads))
        self._threads_now = threads
        self._lock = threading.Lock()
        self.model_id = f"{self.name}@{file_id(self.path)[:16]}"

    def _read_text_keys(self) -> None:
        key = "edgeagent.embed."
        self.query_prefix = native.meta(self._model, key + "query_prefix") or ""
        self.passage_prefix = native.meta(self._model, key + "passage_prefix") or ""
        raw_map = native.meta(self._model, key + "char_map")
        alpha = native.meta(self._model, key + "fusion_alpha")
        try:
            self._char_map = str.maketrans(json.loads(raw_map)) if raw_map else None
            self.fusion_alpha = float(alpha) if alpha else None
        except (ValueError, TypeError):
            raise UserError(f"{self.path.name}: unreadable edgeagent.embed.* metadata") from None

    def tokens(self, text: str) -> list[int]:
        """[CLS] text [SEP], cut to `max_tokens` (the [SEP] kept)."""
        ids = native.tokenize(self._vocab, text, add_special=True, parse_special=False)
        if len(ids) > self.max_tokens:
            ids = ids[: self.max_tokens - 1] + ([self._sep] if self._sep >= 0 else [ids[-1]])
        return ids

    def prepare(self, text: str, *, query: bool = False) -> str:
        """What the model reads for `text`: mapped characters behind the model's prefix."""
        text = str(text)
        if self._char_map is not None:
            text = text.translate(self._char_map)
        return (self.query_prefix if query else self.passage_prefix) + text

    def embed(self, texts: Sequence[str], *,
              query: bool = False) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Unit-length float32 vectors, one row per text (an empty text gets its own vector);
        `query=True` for search queries (the model's query prefix), else passages."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        with self._lock:
            want = self.n_threads
            if query and len(texts) <= QUERY_TEXTS and self.idle_threads > self.n_threads \
                    and runnable_elsewhere() == 0:
                want = self.idle_threads
            if want != self._threads_now:
                self._llama.llama_set_n_threads(self._ctx, want, want)
                self._threads_now = want
            pending: list[tuple[int, list[int]]] = []
            used = 0
            for i, text in enumerate(texts):
                ids = self.tokens(self.prepare(text, query=query))
                if pending and (used + len(ids) > self.batch_tokens or len(pending) >= MAX_SEQS):
                    self._encode(pending, out)
                    pending, used = [], 0
                pending.append((i, ids))
                used += len(ids)
            if pending:
                self._encode(pending, out)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out

    def _encode(self, seqs: list[tuple[int, list[int]]],
                out: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        llama_cpp = self._llama
        batch = self._batch
        n = 0
        for seq, (_, ids) in enumerate(seqs):
            for pos, token in enumerate(ids):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        if self._mem:
            llama_cpp.llama_memory_clear(self._mem, True)
        if llama_cpp.llama_encode(self._ctx, batch) != 0:
            raise UserError(f"llama.cpp could not embed a batch: {native._last_error()}")
        for seq, (row, _) in enumerate(seqs):
            ptr = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            if not ptr:
                raise UserError("llama.cpp returned no pooled embedding (not a pooling model?)")
            out[row] = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                             shape=(self.dim,))

    def close(self) -> None:
        llama_cpp = self._llama
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> GgufEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at exit
        with contextlib.suppress(Exception):
            self.close()
