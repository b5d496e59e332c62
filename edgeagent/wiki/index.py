"""Open a wiki index and search it: `WikiIndex.open(name).search(query, k)`.

The retrieval profile (`retrieval`: `bm25`, `bm25+links`, `bm25+rerank`, `bm25+vectors`) is
the one recorded with the index (`wiki build --profile`) unless `open` is
given another; `WikiIndex.retrieval` names the one in use. The embedding
model of a second stage loads on the first search that needs it.

`search` never raises for any query text: Tantivy syntax is plain text here,
an empty or stop-word-only query returns `[]`, a 10 KB query is capped (see
`schema`). Scores are BM25 (plus the entity-match boost in the `entity`
profile); higher is better, not comparable across indexes.

Not covered: filters, pagination, highlighting.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.links import link_order
from edgeagent.wiki.passages import Passage
from edgeagent.wiki.retrieval import RetrievalProfile, get_profile, read_settings
from edgeagent.wiki.schema import DEFAULT_RANKING, Analysis, Ranking, build_query

if TYPE_CHECKING:
    import tantivy

    from edgeagent.wiki.rerank import SecondStage
    from edgeagent.wiki.store import IndexMeta


class WikiIndex:
    """A read-only, thread-safe handle on one built index."""

    def __init__(self, path: Path, meta: IndexMeta, ranking: Ranking = DEFAULT_RANKING,
                 retrieval: str | RetrievalProfile | None = None,
                 embed_model: Path | str | None = None) -> None:
        import tantivy

        settings = read_settings(path)
        # a model name (embed_model.EMBED_MODELS), a GGUF path, or None: the default
        self.embed_model: Path | str | None = embed_model or settings.embed_model
        self.profile = (retrieval if isinstance(retrieval, RetrievalProfile)
                        else get_profile(retrieval or settings.profile,
                                         embed_model=self.embed_model))
        self._second: SecondStage | None = None
        self._second_lock = threading.Lock()
        self.path = path
        self.meta = meta
        self.ranking = ranking
        self.analysis = Analysis(meta.profile)
        try:
            self._index = tantivy.Index.open(str(path))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot open wiki index {meta.name!r} at {path}: {exc}") from None
        self.analysis.register(self._index)
        self._schema = self._index.schema
        self._searcher: tantivy.Searcher = self._index.searcher()

    @classmethod
    def open(
        cls, name: str, *, root: Path | None = None, ranking: Ranking = DEFAULT_RANKING,
        retrieval: str | RetrievalProfile | None = None,
        embed_model: Path | str | None = None,
    ) -> WikiIndex:
        """The live index called `name` (`UserError` when there is none)."""
        meta, path = store.live_path(name, root)
        return cls(path, meta, ranking, retrieval, embed_model)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def retrieval(self) -> str:
        """The retrieval profile in use (recorded in trajectories)."""
        return self.profile.name

    @property
    def retrieval_settings(self) -> dict[str, Any]:
        """What the profile searched with (recorded in trajectories beside its name): the
        BM25 depth re-scored and title links, and for a profile with a second stage, its
        vectors, fusion and embedding model (a name, or a GGUF file's name)."""
        p = self.profile
        out: dict[str, Any] = {"candidates": p.candidates, "links": p.links}
        if p.needs_model:
            from edgeagent.wiki.embed_model import DEFAULT_EMBED, EMBED_MODELS

            model = str(self.embed_model or DEFAULT_EMBED)
            out.update(vectors=p.vectors, fusion=p.fusion,
                       embed_model=model if model in EMBED_MODELS else Path(model).name)
            if p.fusion == "linear":
                out["alpha"] = p.alpha
            else:
                out["rrf_k"] = p.rrf_k
        return out

    def second_stage(self) -> SecondStage | None:
        """The embedding stage of this profile (loaded on first use), None for `bm25`."""
        if not self.profile.needs_model:
            return None
        with self._second_lock:
            if self._second is None:
                from edgeagent.wiki.rerank import SecondStage

                self._second = SecondStage(self.profile, self.path, self.embed_model)
            return self._second

    def preload(self) -> None:
        """Load the second stage's model in a background thread (the agent writes its first
        action meanwhile); an error shows up again at the first search."""
        if not self.profile.needs_model or self._second is not None:
            return

        def load() -> None:
            with contextlib.suppress(Exception):
                self.second_stage()

        threading.Thread(target=load, name="embedder-preload", daemon=True).start()

    def __len__(self) -> int:
        return int(self._searcher.num_docs)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The `k` best passages for `query`, best first (never raises on query text)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3) -> list[list[Passage]]:
        """`search` for several queries; a second stage embeds the queries in one batch."""
        if k <= 0 or self.profile.candidates <= 0:
            return [self.bm25(q, k) for q in queries]
        n = max(k, self.profile.candidates)
        candidates = [self.bm25(q, n) for q in queries]
        stage = self.second_stage()
        if stage is not None:
            candidates = stage.rerank([q if isinstance(q, str) else "" for q in queries],
                                      candidates, n)
        if self.profile.links > 0:
            candidates = [link_order(self.analysis, c, self.profile.links) for c in candidates]
        return [c[:k] for c in candidates]

    def bm25(self, query: str, k: int = 3) -> list[Passage]:
        """The first stage alone: the `k` best passages by BM25."""
        if k <= 0 or not isinstance(query, str):
            return []
        q = build_query(self.analysis, self._schema, query, self.ranking)
        if q is None:
            return []
        dedupe = self.analysis.profile == "entity" and self.ranking.one_per_title
        fetch = k * self.ranking.overfetch if dedupe else k
        while True:
            hits = self._searcher.search(q, limit=fetch, count=False).hits
            out = self._collect(hits, k, dedupe)
            # Rare: many passages of a few articles filled the window; widen it once.
            if len(out) >= k or len(hits) < fetch or fetch >= k * 32:
                return out
            fetch = k * 32

    def _collect(self, hits: list[tuple[float, tantivy.DocAddress]], k: int,
                 dedupe: bool) -> list[Passage]:
        out: list[Passage] = []
        seen: set[str] = set()
        for score, address in hits:
            doc = self._searcher.doc(address)
            title = str(doc.get_first("title") or "")
            if dedupe:
                if title in seen:
                    continue
                seen.add(title)
            texts = doc.get_all("text")
            text = str(texts[-1]) if texts else ""
            out.append(Passage(title=title, text=text, score=float(score),
                               doc_id=str(doc.get_first("doc_id") or "")))
            if len(out) >= k:
                break
        return out
