"""Retrieval profiles as data, and which one an index uses.

A profile says how `WikiIndex.search` turns a query into passages:

- `bm25`: Tantivy BM25 alone (the index's ranking profile, e.g. `entity`).
- `bm25+links`: BM25, then the candidates the top passage names by title move
  up behind it (`links.link_order`; no model).
- `bm25+rerank`: the top `candidates` BM25 passages re-scored by a sentence
  embedding model at query time; each passage embedded is cached per index
  (`vectors.EmbeddingCache`), so it is embedded once.
- `bm25+vectors`: the same second stage over vectors stored at build time
  (`wiki build --embed`), so a query costs one query embedding and a dot
  product per candidate.

Both second stages then apply the same title links as `bm25+links`.

Both second stages fuse BM25 with the cosine (`rerank.fuse`: reciprocal rank
or a linear mix; `edgeagent bench wiki` measures both). The profile an index
uses is stored in `retrieval.json` in its live generation folder (written by
`wiki build --profile`, with the embedding model's name or path when it is not the
default); `ask --retrieval` and `WikiIndex.open(..., retrieval=)` override it.

Not covered: learned fusion weights, per-query profile choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from edgeagent.atomic import atomic_write_text
from edgeagent.errors import UserError

SETTINGS = "retrieval.json"
DEFAULT_RETRIEVAL = "bm25"


@dataclass(frozen=True)
class RetrievalProfile:
    name: str
    candidates: int = 0  # BM25 passages re-scored; 0 = no second stage
    vectors: str = "none"  # "cache": embedded at query time; "stored": wiki build --embed
    fusion: str = "linear"  # "linear" | "rrf"
    rrf_k: int = 60  # reciprocal rank: 1/(rrf_k + rank)
    alpha: float = 0.7  # linear: weight of the max-normalized BM25 score (1 - alpha: cosine)
    links: int = 0  # top passages whose text names candidates moved up (0: off; see links)

    @property
    def needs_model(self) -> bool:
        return self.candidates > 0 and self.vectors != "none"


RETRIEVAL_PROFILES: dict[str, RetrievalProfile] = {
    "bm25": RetrievalProfile("bm25"),
    # Chosen on the first half of the HotpotQA dev gold titles (bench wiki --split tune;
    # docs/results/2026-12-02-retrieval-links.md): links from the top passage only, 10
    # candidates (20-100 lower recall@3 with links), a 0.7/0.3 linear mix (RRF lower).
    "bm25+links": RetrievalProfile("bm25+links", candidates=10, links=1),
    "bm25+rerank": RetrievalProfile("bm25+rerank", candidates=10, vectors="cache", links=1),
    "bm25+vectors": RetrievalProfile("bm25+vectors", candidates=10, vectors="stored", links=1),
}


def get_profile(name: str, *, fusion: str | None = None, candidates: int | None = None,
                links: int | None = None,
                embed_model: Path | str | None = None) -> RetrievalProfile:
    """The profile called `name` (optionally with another fusion, candidate count or links).

    A second stage whose `embed_model` is a model of `embed_model.EMBED_MODELS` with
    its own tuned depth and links (e5) starts from those; explicit arguments win."""
    profile = RETRIEVAL_PROFILES.get(name)
    if profile is None:
        raise UserError(f"unknown retrieval profile {name!r}; use one of "
                        f"{', '.join(RETRIEVAL_PROFILES)}")
    if profile.needs_model and isinstance(embed_model, str):
        from edgeagent.wiki.embed_model import EMBED_MODELS

        tuned = EMBED_MODELS.get(embed_model)
        if tuned is not None:
            profile = replace(profile, candidates=tuned.candidates or profile.candidates,
                              links=profile.links if tuned.links is None else tuned.links)
    if fusion is not None:
        if fusion not in ("rrf", "linear"):
            raise UserError(f"unknown fusion {fusion!r}; use rrf or linear")
        profile = replace(profile, fusion=fusion)
    if candidates is not None and profile.candidates > 0:
        profile = replace(profile, candidates=max(1, candidates))
    if links is not None and profile.candidates > 0:
        profile = replace(profile, links=max(0, links))
    return profile


@dataclass(frozen=True)
class IndexRetrieval:
    """What `retrieval.json` records for one index generation."""

    profile: str = DEFAULT_RETRIEVAL
    embed_model: str | None = None  # a model name or GGUF path; None = all-MiniLM-L6-v2


def read_settings(folder: Path) -> IndexRetrieval:
    path = folder / SETTINGS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return IndexRetrieval()
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("profile") not in RETRIEVAL_PROFILES:
        raise UserError(f"{path} names no known retrieval profile")
    model = data.get("embed_model")
    return IndexRetrieval(str(data["profile"]), str(model) if model else None)


def write_settings(folder: Path, settings: IndexRetrieval) -> None:
    get_profile(settings.profile)
    atomic_write_text(folder / SETTINGS, json.dumps(settings.__dict__, indent=2) + "\n")
