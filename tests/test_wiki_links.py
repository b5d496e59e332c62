"""Title links after BM25 (`links.link_order`, profile `bm25+links`) on a real Tantivy index.

Covers: a candidate named by the top passage's text moves up behind it (title
key matching: case, ASCII folding, a parenthetical suffix, whole words only,
short titles ignored), the profile chosen at open and recorded with the index,
and `bench wiki` listing it beside BM25. Not covered: the embedding profiles
(tests/test_wiki_rerank.py), recall on real data (bench wiki, slow tests).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeagent.wiki.passages import Passage

DOCS = [
    {"title": "University of Kansas",
     "text": "The University of Kansas is a public university in Lawrence, Kansas. "
             "Its fight song is the Kansas Song; the campus paper is Ku Review."},
    {"title": "Kansas Song", "text": "A song sung at football games since 1914."},
    {"title": "Lawrence Kansas Tourism", "text": "Lawrence, Kansas has a campus and a river."},
    {"title": "Kansas City campus", "text": "A branch campus of a university in Kansas City."},
    {"title": "Ku", "text": "Ku is a syllable; a university campus in Kansas is not named Ku."},
    {"title": "Café Müller (play)", "text": "A dance piece; nothing about Kansas here."},
]


def _p(title: str, text: str = "") -> Passage:
    return Passage(title=title, text=text, score=1.0, doc_id=title)


def test_link_order_moves_named_titles_behind_the_head() -> None:
    from edgeagent.wiki.links import link_order
    from edgeagent.wiki.schema import Analysis

    analysis = Analysis("entity")
    head = _p("Pina Bausch", "She choreographed CAFE MULLER and Front Row, then Ku and Rite.")
    ranked = [head, _p("Other"), _p("Front Row (software)"), _p("Café Müller (play)"),
              _p("Ku"), _p("Rites"), _p("Pina Bausch")]
    got = [p.title for p in link_order(analysis, ranked, heads=1)]
    # named: "front row" (suffix dropped), "cafe muller" (folded); not "Ku" (too short),
    # not "Rites" (whole words only), not the head's own title
    assert got == ["Pina Bausch", "Front Row (software)", "Café Müller (play)", "Other", "Ku",
                   "Rites", "Pina Bausch"]
    assert [p.title for p in link_order(analysis, ranked, heads=0)] == [p.title for p in ranked]
    assert link_order(analysis, ranked[:1], heads=1) == ranked[:1]
    # two heads: the second head's text counts too, and nothing spans the two texts
    two = [_p("A", "ends with front"), _p("B", "row starts here, Other too"), _p("Front Row"),
           _p("Other")]
    assert [p.title for p in link_order(analysis, two, heads=2)] == ["A", "B", "Other",
                                                                        "Front Row"]


def test_bm25_links_profile_on_an_index(tmp_path: Path) -> None:
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.index import WikiIndex

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    build_from_file("w", path, split=False)
    query = "university campus in Lawrence Kansas"
    plain = [p.title for p in WikiIndex.open("w", retrieval="bm25").search(query, 3)]
    linked_index = WikiIndex.open("w", retrieval="bm25+links")
    assert linked_index.second_stage() is None  # no model
    linked = [p.title for p in linked_index.search(query, 3)]
    assert plain[0] == linked[0] == "University of Kansas"
    assert "Kansas Song" not in plain and linked[1] == "Kansas Song"
    finish_retrieval("w", profile="bm25+links")  # recorded with the index: the default now
    index = WikiIndex.open("w")
    assert index.retrieval == "bm25+links" and index.search(query, 3) == linked_index.search(
        query, 3)
