"""Linked passages: in a multi-hop question the second article is usually named in the first.

`link_order(analysis, passages, heads)` keeps the first `heads` passages of a
ranked candidate list and moves every other candidate whose title the head
passages' text names right behind them; both groups keep their previous
order. "Names" means the title's key (`Analysis.title_key`: lowercased, ASCII
folded, a parenthetical suffix dropped, "Front Row (software)" -> "front row")
occurs as a whole word sequence in the head text analyzed the same way. This
is the hyperlink structure HotpotQA's bridge questions were written from: the
question describes article A, and A's text names B ("the fight song of the
university in Lawrence, Kansas": *University of Kansas* names *Kansas Song*).

It needs no model and costs one analysis of `heads` passages per query, so the
profiles `bm25+links`, `bm25+rerank` and `bm25+vectors` apply it after BM25
(and after the embedding fusion); `edgeagent bench wiki` measures it.

Not covered: fetching a named article that is not among the candidates (a
second BM25 query), links named only by a redirect or alias.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeagent.wiki.passages import Passage
from edgeagent.wiki.schema import Analysis

MIN_TITLE_CHARS = 4  # shorter titles ("It", "Us") match ordinary words


def link_order(analysis: Analysis, passages: Sequence[Passage], heads: int = 1) -> list[Passage]:
    """`passages` (best first) with those the first `heads` name moved behind the heads."""
    if heads <= 0 or len(passages) <= heads:
        return list(passages)
    head_keys = {analysis.title_key(p.title) for p in passages[:heads]}
    text = " " + " | ".join(" ".join(analysis.key.analyze(p.text)) for p in passages[:heads]) + " "
    linked: list[Passage] = []
    rest: list[Passage] = []
    for passage in passages[heads:]:
        key = analysis.title_key(passage.title)
        named = (len(key) >= MIN_TITLE_CHARS and key not in head_keys
                 and f" {key} " in text)
        (linked if named else rest).append(passage)
    return [*passages[:heads], *linked, *rest]
