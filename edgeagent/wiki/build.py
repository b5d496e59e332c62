"""Build a wiki index from passages: temp folder, multi-threaded writer, atomic swap.

`build_from_file(name, path)` reads any supported source (see `sources`);
`build_index(name, passages)` takes passages from anywhere (the starter index
uses it). Tantivy's writer indexes on `threads` worker threads while this
thread reads and splits the source; `progress` is called about ten times a
second with a `BuildStatus`. Nothing touches the live index until the new one
is complete and committed (see `store` for the swap); on any error, Ctrl+C or
empty input the temp folder is removed and the old index stays as it was.

Not covered: appending to an existing index, parallel parsing of the source.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.passages import SourcePassage
from edgeagent.wiki.schema import DEFAULT_PROFILE, PROFILES, Analysis, build_schema, make_document
from edgeagent.wiki.sources import Source, iter_limited
from edgeagent.wiki.store import IndexMeta


@dataclass(frozen=True)
class BuildStatus:
    """Where a build stands; `bytes_total` is None when the size is unknown."""

    passages: int
    bytes_read: int
    bytes_total: int | None
    elapsed: float
    phase: str  # "indexing" | "committing" | "done"

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.elapsed if self.elapsed > 0 else 0.0


ProgressFn = Callable[[BuildStatus], None]


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _check_target(name: str, force: bool, root: Path | None) -> None:
    store.check_name(name)
    if not force and store.read_meta(name, root) is not None:
        raise UserError(f"a wiki index named {name!r} already exists; use --force to rebuild it")


def build_index(
    name: str,
    passages: Iterable[SourcePassage],
    *,
    source: str,
    fmt: str,
    force: bool = False,
    profile: str = DEFAULT_PROFILE,
    attribution: str = "",
    license: str = "",
    threads: int | None = None,
    heap_mb: int = 128,
    progress: ProgressFn | None = None,
    position: Callable[[], int] | None = None,
    bytes_total: int | None = None,
    root: Path | None = None,
    extra: dict[str, object] | None = None,
) -> IndexMeta:
    """Index `passages` as `name` and make it live; returns its metadata."""
    import tantivy

    if profile not in PROFILES:
        raise UserError(f"unknown ranking profile {profile!r}; use one of {', '.join(PROFILES)}")
    _check_target(name, force, root)
    store.cleanup(name, root)
    n_threads = threads or default_threads()
    analysis = Analysis(profile)
    schema = build_schema(profile)
    tmp = store.new_temp_dir(name, root)
    started = time.perf_counter()
    count = 0
    writer: tantivy.IndexWriter | None = None

    def report(phase: str) -> None:
        if progress is not None:
            progress(BuildStatus(count, position() if position else 0, bytes_total,
                                 time.perf_counter() - started, phase))

    try:
        index = tantivy.Index(schema, path=str(tmp), reuse=False)
        analysis.register(index)
        writer = index.writer(heap_size=heap_mb * 1_000_000 * n_threads, num_threads=n_threads)
        next_report = started
        for passage in passages:
            writer.add_document(make_document(analysis, passage.title, passage.text,
                                              passage.doc_id))
            count += 1
            if progress is not None and count % 512 == 0:
                now = time.perf_counter()
                if now >= next_report:
                    next_report = now + 0.1
                    report("indexing")
        if count == 0:
            raise UserError(f"{source}: no passages found (empty source?)")
        report("committing")
        writer.commit()
        writer.wait_merging_threads()
        writer = None
        del index
        elapsed = time.perf_counter() - started
        meta = IndexMeta(
            name=name, source=source, format=fmt, passages=count,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            profile=profile, generation="", attribution=attribution, license=license,
            build_seconds=round(elapsed, 3), extra=dict(extra or {}),
        )
        store.commit(tmp, meta, root)
        report("done")
        return meta
    except BaseException:
        if writer is not None:
            # Stop the writer's threads first, or they write segments after the rmtree.
            with contextlib.suppress(Exception):
                writer.rollback()
            with contextlib.suppress(Exception):
                writer.wait_merging_threads()
            writer = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_from_file(
    name: str,
    path: Path,
    *,
    fmt: str = "auto",
    limit: int | None = None,
    split: bool = True,
    force: bool = False,
    profile: str = DEFAULT_PROFILE,
    attribution: str = "",
    license: str = "",
    threads: int | None = None,
    progress: ProgressFn | None = None,
    root: Path | None = None,
) -> IndexMeta:
    """Build index `name` from a JSONL(.gz), DPR TSV or MediaWiki XML(.bz2) file."""
    if limit is not None and limit <= 0:
        raise UserError("--limit must be a positive number of passages")
    _check_target(name, force, root)
    src = Source(Path(path), fmt, split=split)
    return build_index(
        name, iter_limited(src.passages(), limit), source=str(Path(path).resolve()),
        fmt=src.format, force=force, profile=profile, attribution=attribution,
        license=license, threads=threads, progress=progress, position=src.position,
        bytes_total=src.size, root=root, extra={"split": split, "limit": limit},
    )
