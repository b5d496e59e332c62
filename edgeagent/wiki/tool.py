"""The `web_search` tool's observation text, in the paper's format.

The reference agent (Kang et al., 2025) printed its e5 retriever's top-3 as

    \\nRetrieved documents:\\n\\n===== Document 0, similarity: 0.87 =====\\n"Title"\\ntext

with further documents joined by a blank line. Students trained on those
trajectories expect exactly this shape. BM25 scores are unbounded, so the
"similarity" shown is `score / (score + 10)`: in (0, 1), in the same order as
the scores, and close to the e5 range for good matches.

Not covered: the channel from the sandboxed interpreter to the index (tools).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgeagent.wiki.passages import Passage

NO_RESULTS = "\nRetrieved documents:\n\nNo documents found for this query."


def similarity(score: float) -> float:
    """A BM25 score squashed into [0, 1)."""
    return score / (score + 10.0) if score > 0 else 0.0


def format_web_search(passages: Sequence[Passage]) -> str:
    """The observation string for a list of hits (best first)."""
    if not passages:
        return NO_RESULTS
    return "\nRetrieved documents:" + "".join(
        f"\n\n===== Document {i}, similarity: {similarity(p.score):.2f} =====\n"
        f'"{p.title}"\n{p.text}'
        for i, p in enumerate(passages)
    )


def make_web_search(
    search: Callable[[str, int], list[Passage]], k: int = 3
) -> Callable[[str], str]:
    """`web_search(query) -> str` bound to a search function (e.g. `WikiIndex.search`)."""

    def web_search(query: str) -> str:
        return format_web_search(search(str(query), k))

    return web_search
