"""After a build: embed the index's passages (`--embed`) and record its retrieval profile.

`finish_retrieval(name, profile=..., embed=..., embed_model=...)` runs on the
live generation of a freshly built index: with `embed` ("int8" or "binary")
it embeds every passage with the embedding model and stores the vectors
there (`vectors.embed_index`), then it writes `retrieval.json`. The profile
`bm25+vectors` needs vectors, so it implies `embed="int8"`. A Ctrl+C while
embedding leaves the index searchable with BM25 (no `retrieval.json` and no
`vectors.json` are written until the vectors are complete).

Not covered: embedding at indexing time in the Tantivy writer's threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.embed_model import model_choice
from edgeagent.wiki.retrieval import IndexRetrieval, get_profile, write_settings
from edgeagent.wiki.vectors import QUANTS, VectorMeta

EmbedProgress = Callable[[int, int, float], None]  # (passages done, total, seconds)


def check_options(profile: str, embed: str | None) -> str | None:
    """Validate before building; the quantization to embed with (or None)."""
    spec = get_profile(profile)
    if embed is not None and embed not in QUANTS:
        raise UserError(f"unknown --embed {embed!r}; use {' or '.join(QUANTS)}")
    if spec.vectors == "stored" and embed is None:
        return "int8"
    return embed


def finish_retrieval(name: str, *, profile: str = "bm25", embed: str | None = None,
                     embed_model: Path | str | None = None, root: Path | None = None,
                     progress: EmbedProgress | None = None,
                     threads: int | None = None) -> VectorMeta | None:
    """Embed (when asked) and record the profile of the live index `name`."""
    embed = check_options(profile, embed)
    meta, folder = store.live_path(name, root)
    choice = model_choice(embed_model)  # a name, an absolute GGUF path, or None
    vectors = None
    if embed is not None:
        from edgeagent.engines.llamacpp import default_threads
        from edgeagent.wiki.rerank import shared_embedder
        from edgeagent.wiki.vectors import embed_index

        embedder = shared_embedder(choice, threads or default_threads())
        vectors = embed_index(folder, meta.profile, embedder, quant=embed,
                              progress=progress, total=meta.passages)
    write_settings(folder, IndexRetrieval(profile, choice))
    return vectors


@contextmanager
def rich_embed_progress(label: str) -> Iterator[EmbedProgress]:
    """A rich bar on stderr (terminals only) for `finish_retrieval`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total, seconds: None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]:,.0f} passages/s"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(label, total=None, rate=0.0)

        def update(done: int, total: int, seconds: float) -> None:
            bar.update(task, completed=done, total=total or None,
                       rate=done / seconds if seconds > 0 else 0.0)

        yield update
