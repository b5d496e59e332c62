"""Index schemas, analyzers and query construction, one set per ranking profile.

Profiles (the name is stored in each index's metadata, so search always uses
the analyzer and query shape its index was built with):

- `naive`: BM25 over `text` only, Tantivy's default tokenizer, the question's
  words OR-ed: the baseline (recall@3 0.66 / @10 0.89 on the HotpotQA questions).
- `entity` (default): BM25 over one analyzed field holding the title and the
  passage text (simple tokens, lowercase, ASCII folding, English stop words,
  English stemmer), plus an entity-match boost: every 1..6-word n-gram of the
  question is looked up as an exact normalized article title (`title_key`),
  so "Which bay is George McCall Theal's birthplace on?" pulls up the article
  "George McCall Theal". Results keep one passage per article (a diverse top-k
  covers more hops). `edgeagent bench wiki` measures both profiles.

Queries are built term by term from the analyzer's output (never through the
Tantivy query parser), so `AND`, `:`, quotes, parentheses and `-` are plain
text; empty and very long queries are handled (long ones are capped).

Not covered: phrase queries, fuzzy matching, learned ranking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tantivy

DEFAULT_PROFILE = "entity"
PROFILES: tuple[str, ...] = ("entity", "naive")

ANALYZER = "ea_en"
MAX_QUERY_CHARS = 4000
MAX_QUERY_TERMS = 64
MAX_KEY_WORDS = 48
MAX_NGRAM = 6


@dataclass(frozen=True)
class Ranking:
    """Query-time knobs of the `entity` profile (measured by `bench wiki`)."""

    entity_boost: float = 1.0
    ngram_growth: float = 0.25  # extra boost per word of a matched title n-gram
    one_per_title: bool = True
    overfetch: int = 3


DEFAULT_RANKING = Ranking()

_PAREN_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")


def _text_analyzer() -> tantivy.TextAnalyzer:
    from tantivy import Filter, TextAnalyzerBuilder, Tokenizer

    return (
        TextAnalyzerBuilder(Tokenizer.simple())
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .filter(Filter.ascii_fold())
        .filter(Filter.stopword("english"))
        .filter(Filter.stemmer("english"))
        .build()
    )


def _key_analyzer() -> tantivy.TextAnalyzer:
    from tantivy import Filter, TextAnalyzerBuilder, Tokenizer

    return (
        TextAnalyzerBuilder(Tokenizer.simple())
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .filter(Filter.ascii_fold())
        .build()
    )


def _default_analyzer() -> tantivy.TextAnalyzer:
    from tantivy import Filter, TextAnalyzerBuilder, Tokenizer

    return (
        TextAnalyzerBuilder(Tokenizer.simple())
        .filter(Filter.remove_long(40))
        .filter(Filter.lowercase())
        .build()
    )


class Analysis:
    """Analyzers for one profile: registered on the index, reused for queries."""

    def __init__(self, profile: str) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown ranking profile {profile!r}")
        self.profile = profile
        self.text = _text_analyzer() if profile == "entity" else _default_analyzer()
        self.key = _key_analyzer()

    def register(self, index: tantivy.Index) -> None:
        if self.profile == "entity":
            index.register_tokenizer(ANALYZER, self.text)

    def title_key(self, title: str) -> str:
        """The normalized title used for matching: "Front Row (software)" -> "front row"."""
        return " ".join(self.key.analyze(_PAREN_SUFFIX.sub("", title)))


def build_schema(profile: str) -> tantivy.Schema:
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("title", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("doc_id", stored=True, tokenizer_name="raw", index_option="basic")
    if profile == "entity":
        sb.add_text_field("text", stored=True, tokenizer_name=ANALYZER, index_option="freq")
        sb.add_text_field("title_key", stored=False, tokenizer_name="raw", index_option="basic")
    else:
        sb.add_text_field("text", stored=True, tokenizer_name="default", index_option="freq")
    return sb.build()


def make_document(analysis: Analysis, title: str, text: str, doc_id: str) -> tantivy.Document:
    """The document for one passage. In `entity` the title is a second `text` value."""
    import tantivy

    if analysis.profile == "entity":
        doc = tantivy.Document(title=title, doc_id=doc_id, text=[title, text] if title else [text])
        key = analysis.title_key(title)
        if key:
            doc.add_text("title_key", key)
        return doc
    return tantivy.Document(title=title, doc_id=doc_id, text=text)


def build_query(
    analysis: Analysis, schema: tantivy.Schema, query: str, ranking: Ranking = DEFAULT_RANKING
) -> tantivy.Query | None:
    """The Tantivy query for a free-text question, or None when nothing is searchable."""
    from tantivy import Occur, Query

    text = query[:MAX_QUERY_CHARS]
    terms = list(dict.fromkeys(analysis.text.analyze(text)))[:MAX_QUERY_TERMS]
    clauses: list[tuple[Any, Query]] = [
        (Occur.Should, Query.term_query(schema, "text", term)) for term in terms
    ]
    if analysis.profile == "entity" and ranking.entity_boost > 0:
        words = analysis.key.analyze(text)[:MAX_KEY_WORDS]
        grams: dict[str, float] = {}
        for n in range(1, MAX_NGRAM + 1):
            boost = ranking.entity_boost * (1.0 + ranking.ngram_growth * (n - 1))
            for i in range(len(words) - n + 1):
                grams[" ".join(words[i : i + n])] = boost
        clauses.extend(
            (Occur.Should, Query.boost_query(Query.term_query(schema, "title_key", g), boost))
            for g, boost in grams.items()
        )
    if not clauses:
        return None
    return Query.boolean_query(clauses)
