"""The second stage: re-score BM25 candidates with sentence embeddings and fuse.

`SecondStage(profile, folder, model_path).rerank(queries, candidates, k)`
embeds the queries in one batch, looks up (or embeds and caches) each
candidate passage's vector, and orders the candidates by `fuse`:

- `rrf`: reciprocal-rank fusion, `1/(rrf_k + bm25_rank) + 1/(rrf_k + cos_rank)`;
  scale-free, so BM25's unbounded scores need no normalization.
- `linear`: `alpha * bm25/max(bm25) + (1 - alpha) * cosine` over the candidates;
  `alpha` is the model's (`GgufEmbedder.fusion_alpha`: cosines of e5 lie in a
  narrow band, so it needs a small BM25 weight) or else the profile's 0.7.

Returned passages keep their BM25 `score` (the tool's "similarity" stays the
squashed BM25 score); only the order changes. Embedding models are loaded
once per process and path (`shared_embedder`) and only when a second stage
first runs, so opening an index stays cheap.

Not covered: cross-encoder re-ranking, learned fusion.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeagent.errors import UserError
from edgeagent.wiki.passages import Passage
from edgeagent.wiki.retrieval import RetrievalProfile
from edgeagent.wiki.vectors import (
    EmbeddingCache,
    FloatArray,
    VectorStore,
    embed_text,
    passage_key,
)

if TYPE_CHECKING:
    from edgeagent.wiki.embedder import GgufEmbedder

_embedders: dict[tuple[Path, int], GgufEmbedder] = {}
_embedders_lock = threading.Lock()


def shared_embedder(model: Path | str | None, threads: int = 1) -> GgufEmbedder:
    """The embedder for `model` (None: the default model; a name from `EMBED_MODELS`, fetched
    on first use; or a GGUF path), loaded once per process, file and thread count."""
    from edgeagent.wiki.embed_model import resolve_embed_model
    from edgeagent.wiki.embedder import GgufEmbedder

    key = (resolve_embed_model(model).resolve(), threads)
    with _embedders_lock:
        got = _embedders.get(key)
        if got is None:
            got = _embedders[key] = GgufEmbedder(key[0], n_threads=threads)
        return got


def fuse(bm25: Sequence[float], cosine: Sequence[float], profile: RetrievalProfile,
         alpha: float | None = None) -> list[int]:
    """Candidate positions, best first, by the profile's fusion of the two scores; `alpha`
    (the model's own linear weight, when it has one) replaces the profile's."""
    n = len(bm25)
    if n == 0:
        return []
    if profile.fusion == "linear":
        a = profile.alpha if alpha is None else alpha
        top = max(max(bm25), 1e-9)
        fused = [a * b / top + (1 - a) * c
                 for b, c in zip(bm25, cosine, strict=True)]
    else:
        by_cos = sorted(range(n), key=lambda i: -cosine[i])
        cos_rank = {pos: r for r, pos in enumerate(by_cos)}
        # candidates arrive in BM25 order: their position is their BM25 rank
        fused = [1 / (profile.rrf_k + i + 1) + 1 / (profile.rrf_k + cos_rank[i] + 1)
                 for i in range(n)]
    return sorted(range(n), key=lambda i: -fused[i])


class SecondStage:
    """Embedding re-scoring of BM25 candidates for one index generation."""

    def __init__(self, profile: RetrievalProfile, folder: Path,
                 model_path: Path | str | None = None) -> None:
        if not profile.needs_model:
            raise ValueError(f"profile {profile.name} has no second stage")
        self.profile = profile
        self.embedder = shared_embedder(model_path)
        self.model_id = self.embedder.model_id
        self.store: VectorStore | None = None
        self.cache: EmbeddingCache | None = None
        if profile.vectors == "stored":
            self.store = VectorStore(folder, self.model_id)
        else:
            self.cache = EmbeddingCache(folder, self.model_id, self.embedder.dim)
        self._lock = threading.Lock()

    def _cosines(self, query: FloatArray, passages: Sequence[Passage]) -> list[float]:
        keys = [passage_key(p.title, p.text) for p in passages]
        if self.store is not None:
            found = self.store.scores(query, keys)
            missing = [i for i, s in enumerate(found) if s is None]
            if missing:  # a passage the build did not embed (should not happen): embed it
                vecs = self.embedder.embed([embed_text(passages[i].title, passages[i].text)
                                            for i in missing])
                for i, vec in zip(missing, vecs, strict=True):
                    found[i] = float(vec @ query)
            return [float(s or 0.0) for s in found]
        assert self.cache is not None
        with self._lock:
            todo = [i for i, key in enumerate(keys) if self.cache.get(key) is None]
            todo = list(dict.fromkeys(todo))
            if todo:
                fresh = self.embedder.embed([embed_text(passages[i].title, passages[i].text)
                                             for i in todo])
                self.cache.add([keys[i] for i in todo], fresh)
            rows = [self.cache.get(key) for key in keys]
        return [float(row @ query) if row is not None else 0.0 for row in rows]

    def rerank(self, queries: Sequence[str], candidates: Sequence[Sequence[Passage]],
               k: int) -> list[list[Passage]]:
        """For each query, its `k` best candidates after fusion (queries embedded together)."""
        if len(queries) != len(candidates):
            raise UserError("one candidate list per query is needed")
        live = [i for i, c in enumerate(candidates) if c]
        out: list[list[Passage]] = [[] for _ in queries]
        if not live:
            return out
        qvecs = self.embedder.embed([queries[i] for i in live], query=True)
        for qvec, i in zip(qvecs, live, strict=True):
            cands = list(candidates[i])
            cos = self._cosines(np.asarray(qvec, dtype=np.float32), cands)
            order = fuse([p.score for p in cands], cos, self.profile, self.embedder.fusion_alpha)
            out[i] = [replace(cands[j]) for j in order[:k]]
        return out
