"""A resumable index build: periodic commits into a kept work folder, then the atomic swap.

`build_resumable(name, open_passages, workdir=…)` indexes the passages that
`open_passages()` yields (always from the first one, in order) into `workdir`,
a folder inside the index's folder (`store`'s `.partial-<key>`). Every
`checkpoint_every` passages the Tantivy writer commits, so a build killed at
any instant (even with SIGKILL) leaves a work folder holding exactly the first
N passages, N = its committed document count. The next call with the same
`workdir` reads N from the index itself, skips the first N passages of the
stream without indexing them, and goes on; `limit` counts from the first
passage, so the finished index is the same whether or not it was interrupted.
The live index (`wiki.json` -> `g-*`) is untouched until the build completes;
then the work folder becomes the new generation (see `store.commit`).

`before_commit` runs after the last passage and before the swap (`wiki pull`
checks the download's sha256 there); raising keeps the old index live.

Not covered: choosing the work folder (the caller keys it), parallel sources.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.build import BuildStatus, ProgressFn, default_threads
from edgeagent.wiki.passages import SourcePassage
from edgeagent.wiki.schema import Analysis, build_schema, make_document
from edgeagent.wiki.store import IndexMeta

STATE_FILE = "pull-state.json"


def committed_passages(workdir: Path) -> int:
    """How many passages a kept work folder holds (0 when there is no index in it)."""
    import tantivy

    if not (workdir / "meta.json").is_file():
        return 0
    try:
        index = tantivy.Index.open(str(workdir))
        index.reload()
        return int(index.searcher().num_docs)
    except (OSError, ValueError):
        return 0


def write_state(workdir: Path, state: dict[str, object]) -> None:
    """Write the work folder's key and progress (atomic replace)."""
    from edgeagent.atomic import atomic_write_text

    atomic_write_text(workdir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def read_state(workdir: Path) -> dict[str, object]:
    try:
        data = json.loads((workdir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_resumable(
    name: str,
    open_passages: Callable[[], Iterator[SourcePassage]],
    *,
    workdir: Path,
    source: str,
    fmt: str,
    profile: str,
    limit: int | None = None,
    checkpoint_every: int = 250_000,
    attribution: str = "",
    license: str = "",
    threads: int | None = None,
    heap_mb: int = 128,
    progress: ProgressFn | None = None,
    position: Callable[[], int] | None = None,
    bytes_total: int | None = None,
    before_commit: Callable[[], None] | None = None,
    root: Path | None = None,
    extra: dict[str, object] | None = None,
) -> IndexMeta:
    """Index `open_passages()` into `workdir`, resuming what it already holds; make it live."""
    import tantivy

    if checkpoint_every <= 0:
        raise UserError("--checkpoint-every must be a positive number of passages")
    store.check_name(name)
    workdir.mkdir(parents=True, exist_ok=True)
    done = committed_passages(workdir)
    n_threads = threads or default_threads()
    analysis = Analysis(profile)
    if done:
        index = tantivy.Index.open(str(workdir))
    else:
        index = tantivy.Index(build_schema(profile), path=str(workdir), reuse=False)
    analysis.register(index)
    started = time.perf_counter()
    seen = 0  # passages of the stream passed so far (skipped or indexed)
    added = 0  # passages indexed by this run
    phase = "skipping" if done else "indexing"

    def report(now_phase: str) -> None:
        if progress is not None:
            progress(BuildStatus(seen, position() if position else 0, bytes_total,
                                 time.perf_counter() - started, now_phase))

    w = index.writer(heap_size=heap_mb * 1_000_000 * n_threads, num_threads=n_threads)
    writer: tantivy.IndexWriter | None = w
    try:
        next_report = started
        since_commit = 0
        for passage in open_passages():
            if limit is not None and seen >= limit:
                break
            seen += 1
            if seen <= done:
                if seen % 4096 == 0:
                    report("skipping")
                continue
            phase = "indexing"
            w.add_document(make_document(analysis, passage.title, passage.text,
                                              passage.doc_id))
            added += 1
            since_commit += 1
            if since_commit >= checkpoint_every:
                w.commit()
                since_commit = 0
                write_state(workdir, dict(read_state(workdir), committed=seen))
            if progress is not None and seen % 512 == 0:
                now = time.perf_counter()
                if now >= next_report:
                    next_report = now + 0.1
                    report(phase)
        if seen == 0:
            raise UserError(f"{source}: no passages found (empty source?)")
        if seen < done:
            raise UserError(f"{source} holds {seen:,} passages, fewer than the {done:,} "
                            "already indexed; run `edgeagent wiki pull` with --restart")
        report("committing")
        w.commit()
        w.wait_merging_threads()
        writer = None
        write_state(workdir, dict(read_state(workdir), committed=seen))
        if before_commit is not None:
            before_commit()
        del index
        elapsed = time.perf_counter() - started
        meta = IndexMeta(
            name=name, source=source, format=fmt, passages=seen,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            profile=profile, generation="", attribution=attribution, license=license,
            build_seconds=round(elapsed, 3),
            extra=dict(extra or {}, resumed_at=done, indexed_this_run=added),
        )
        (workdir / STATE_FILE).unlink(missing_ok=True)
        store.commit(workdir, meta, root)
        report("done")
        return meta
    finally:
        if writer is not None:
            # Drop what was added since the last commit; the committed part stays for a resume.
            with contextlib.suppress(Exception):
                writer.rollback()
            with contextlib.suppress(Exception):
                writer.wait_merging_threads()
