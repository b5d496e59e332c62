"""Passage vectors beside a Tantivy index: precomputed (`VectorStore`) or cached (`EmbeddingCache`).

Passages are keyed by `passage_key(title, text)` (64 bits of BLAKE2b), so no
Tantivy document id is needed and a key means the same text in any index.

- `VectorStore`: written once by `embed_index` (`wiki build --embed`) into the
  index's live generation folder: `vectors.json` (model id, dimension,
  quantization, count), `vectors.keys.npy` (sorted uint64) and either
  `vectors.int8.npy` + `vectors.scale.npy` (per-row scale; cosine within ~1%)
  or `vectors.binary.npy` (one sign bit per dimension, 32x smaller than
  float32; scored asymmetrically against the float query). All are opened
  memory-mapped; a lookup is a binary search, a score a dot product per
  candidate. Opening with another model than the one recorded is refused.
- `EmbeddingCache`: what the `bm25+rerank` profile embeds at query time,
  appended to `embed-cache.<model>.f16` in the generation folder (8-byte key +
  float16 vector per record), so each passage is embedded once per index and
  model. A torn last record (killed process) is ignored.

Not covered: approximate nearest-neighbour search over all vectors (the
second stage only scores BM25 candidates), updating vectors in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeagent.errors import UserError

if TYPE_CHECKING:
    from edgeagent.wiki.embedder import GgufEmbedder

QUANTS: tuple[str, ...] = ("int8", "binary")
META = "vectors.json"
FloatArray = np.ndarray[Any, np.dtype[np.float32]]


def passage_key(title: str, text: str) -> int:
    digest = hashlib.blake2b(f"{title}\n{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def embed_text(title: str, text: str) -> str:
    """What the model reads for a passage: its title, then its text."""
    return f"{title}. {text}" if title else text


def _save(path: Path, array: np.ndarray[Any, Any]) -> None:
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(part, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def quantize(vectors: FloatArray, quant: str) -> dict[str, np.ndarray[Any, Any]]:
    if quant == "int8":
        peak = np.maximum(np.abs(vectors).max(axis=1), 1e-12).astype(np.float32)
        rows = np.round(vectors / peak[:, None] * 127.0).astype(np.int8)
        return {"int8": rows, "scale": (peak / 127.0).astype(np.float32)}
    if quant == "binary":
        return {"binary": np.packbits(vectors > 0, axis=1)}
    raise UserError(f"unknown vector quantization {quant!r}; use {' or '.join(QUANTS)}")


@dataclass(frozen=True)
class VectorMeta:
    model_id: str
    dim: int
    quant: str
    count: int
    seconds: float = 0.0

    @property
    def passages_per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def write_vectors(folder: Path, keys: np.ndarray[Any, Any], vectors: FloatArray, *,
                  quant: str, model_id: str, seconds: float = 0.0) -> VectorMeta:
    """Store `vectors` (unit rows) under `keys` in `folder`; `vectors.json` goes last."""
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]  # the same passage twice: one row
    rows = order[keep]
    parts = quantize(np.ascontiguousarray(vectors[rows]), quant)
    meta = VectorMeta(model_id=model_id, dim=int(vectors.shape[1]), quant=quant,
                      count=int(keep.sum()), seconds=round(seconds, 3))
    (folder / META).unlink(missing_ok=True)
    _save(folder / "vectors.keys.npy", keys[keep].astype(np.uint64))
    for name, array in parts.items():
        _save(folder / f"vectors.{name}.npy", array)
    part = folder / f".{META}.{os.getpid()}.part"
    part.write_text(json.dumps(meta.__dict__, indent=2) + "\n", encoding="utf-8")
    os.replace(part, folder / META)
    return meta


def read_vector_meta(folder: Path) -> VectorMeta | None:
    try:
        data = json.loads((folder / META).read_text(encoding="utf-8"))
        return VectorMeta(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"unreadable {folder / META}: {exc}; rebuild with --embed") from None


class VectorStore:
    """Memory-mapped precomputed vectors of one index."""

    def __init__(self, folder: Path, model_id: str) -> None:
        meta = read_vector_meta(folder)
        if meta is None:
            raise UserError(f"index at {folder} has no stored vectors; "
                            "rebuild it with `edgeagent wiki build ... --embed`")
        if meta.model_id != model_id:
            raise UserError(f"the index's vectors were made by {meta.model_id}, not by "
                            f"{model_id}; rebuild with --embed or use that model")
        self.meta = meta
        try:
            self.keys = np.load(folder / "vectors.keys.npy", mmap_mode="r")
            if meta.quant == "int8":
                self.rows = np.load(folder / "vectors.int8.npy", mmap_mode="r")
                self.scale = np.load(folder / "vectors.scale.npy", mmap_mode="r")
            else:
                self.rows = np.load(folder / "vectors.binary.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise UserError(f"damaged vectors in {folder}: {exc}; rebuild with --embed") from None

    def scores(self, query: FloatArray, keys: Sequence[int]) -> list[float | None]:
        """Cosine of `query` with each passage; None where the passage has no vector."""
        wanted = np.asarray(keys, dtype=np.uint64)
        pos = np.searchsorted(self.keys, wanted)
        pos = np.minimum(pos, len(self.keys) - 1)
        found = self.keys[pos] == wanted
        out: list[float | None] = [None] * len(keys)
        idx = pos[found]
        if len(idx):
            if self.meta.quant == "int8":
                got = (self.rows[idx].astype(np.float32) @ query) * self.scale[idx]
            else:
                signs = np.unpackbits(self.rows[idx], axis=1, count=self.meta.dim)
                got = (signs.astype(np.float32) * 2 - 1) @ query / np.sqrt(self.meta.dim)
            for i, value in zip(np.flatnonzero(found), got, strict=True):
                out[int(i)] = float(value)
        return out


class EmbeddingCache:
    """Append-only float16 vectors of passages embedded at query time."""

    def __init__(self, folder: Path, model_id: str, dim: int) -> None:
        tag = hashlib.blake2b(model_id.encode(), digest_size=6).hexdigest()
        self.path = folder / f"embed-cache.{tag}.f16"
        self.dtype = np.dtype([("key", "<u8"), ("vec", "<f2", (dim,))])
        self._vectors: dict[int, FloatArray] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            usable = len(raw) // self.dtype.itemsize * self.dtype.itemsize
            records = np.frombuffer(raw[:usable], dtype=self.dtype)
            for key, vec in zip(records["key"], records["vec"], strict=True):
                self._vectors[int(key)] = vec.astype(np.float32)

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: int) -> FloatArray | None:
        return self._vectors.get(key)

    def add(self, keys: Sequence[int], vectors: FloatArray) -> None:
        records = np.zeros(len(keys), dtype=self.dtype)
        records["key"] = np.asarray(keys, dtype=np.uint64)
        records["vec"] = vectors.astype(np.float16)
        for key, vec in zip(keys, vectors, strict=True):
            self._vectors[int(key)] = vec.astype(np.float32)
        try:  # one write per batch, in append mode: concurrent readers see whole records
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, records.tobytes())
            finally:
                os.close(fd)
        except OSError:
            pass  # a read-only index: the cache lives in memory only


def iter_index_passages(index_path: Path, profile: str) -> Iterable[tuple[str, str]]:
    """(title, text) of every passage of a Tantivy index folder."""
    import tantivy

    from edgeagent.wiki.schema import Analysis

    index = tantivy.Index.open(str(index_path))
    Analysis(profile).register(index)
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), limit=max(1, searcher.num_docs),
                           count=False).hits
    for _, address in sorted(hits, key=lambda h: (h[1].segment_ord, h[1].doc)):
        doc = searcher.doc(address)
        texts = doc.get_all("text")
        yield str(doc.get_first("title") or ""), str(texts[-1]) if texts else ""


def embed_index(folder: Path, profile: str, embedder: GgufEmbedder, *, quant: str = "int8",
                batch: int = 256, progress: Callable[[int, int, float], None] | None = None,
                total: int = 0) -> VectorMeta:
    """Embed every passage of the Tantivy index in `folder` and store the vectors there."""
    if quant not in QUANTS:
        raise UserError(f"unknown vector quantization {quant!r}; use {' or '.join(QUANTS)}")
    started = time.perf_counter()
    keys: list[int] = []
    chunks: list[FloatArray] = []
    texts: list[str] = []

    def flush() -> None:
        chunks.append(embedder.embed(texts))
        texts.clear()
        if progress is not None:
            progress(len(keys), total, time.perf_counter() - started)

    for title, text in iter_index_passages(folder, profile):
        keys.append(passage_key(title, text))
        texts.append(embed_text(title, text))
        if len(texts) >= batch:
            flush()
    if texts:
        flush()
    if not keys:
        raise UserError("the index has no passages to embed")
    vectors = np.concatenate(chunks).astype(np.float32)
    return write_vectors(folder, np.asarray(keys, dtype=np.uint64), vectors, quant=quant,
                         model_id=embedder.model_id, seconds=time.perf_counter() - started)
