"""Passage records and the ~100-word splitter.

`SourcePassage` is what readers yield (one passage to index); `Passage` is a
search hit. `split_words` cuts an article into passages of at most 100
whitespace words (texts up to 150 words stay whole), packing whole
paragraphs; the title is carried separately, as in DPR's wiki passages.

Not covered: sentence-aware splitting, overlap between passages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PASSAGE_WORDS = 100


@dataclass(frozen=True)
class SourcePassage:
    """One passage to index: its article title, its text and a stable id."""

    title: str
    text: str
    doc_id: str


@dataclass(frozen=True)
class Passage:
    """One search hit."""

    title: str
    text: str
    score: float
    doc_id: str

    def to_dict(self) -> dict[str, object]:
        return {"title": self.title, "text": self.text, "score": self.score, "doc_id": self.doc_id}


def _even_chunks(words: list[str], target: int) -> list[list[str]]:
    count = -(-len(words) // target)
    base, extra = divmod(len(words), count)
    out: list[list[str]] = []
    start = 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        out.append(words[start:end])
        start = end
    return out


def split_words(text: str, target: int = PASSAGE_WORDS) -> list[str]:
    """Cut `text` into passages of at most `target` words, keeping paragraphs together.

    Paragraphs (split on "\n" only) are packed greedily into one passage while
    they fit; a paragraph longer than `target` is cut into equal pieces of at
    most `target` words. A short heading line thus travels with the paragraph
    after it, and no passage straddles more text than it must. A whole text of
    up to 1.5 x `target` words stays one passage (a long paragraph is better
    whole than cut into two halves; this also keeps paragraph corpora intact).
    """
    total = text.split()
    if len(total) <= target * 3 // 2:
        return [" ".join(total)] if total else []
    out: list[str] = []
    current: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        if not words:
            continue
        if len(current) + len(words) <= target:
            current.extend(words)
            continue
        if current:
            out.append(" ".join(current))
            current = []
        if len(words) <= target:
            current = words
            continue
        pieces = _even_chunks(words, target)
        out.extend(" ".join(piece) for piece in pieces[:-1])
        current = pieces[-1]
    if current:
        out.append(" ".join(current))
    return out


def article_passages(title: str, text: str, article_id: str) -> Iterator[SourcePassage]:
    """The passages of one article, ids `ARTICLE#N`."""
    for n, chunk in enumerate(split_words(text)):
        yield SourcePassage(title=title, text=chunk, doc_id=f"{article_id}#{n}")
