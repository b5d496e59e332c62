"""`wiki pull`: the paper's Wikipedia (wiki-18, 21M passages) from the Hub into an index.

The default is Search-R1's retrieval corpus that the paper's agents search:
dataset `PeterJinGo/wiki-18-corpus`, file `wiki-18.jsonl.gz` (the Dec 2018
Wikipedia in 21,015,324 DPR passages, records `{"id", "contents":
"\\"Title\\"\\ntext"}`; a plain gzip of JSON Lines or a gzip of a tar holding
one JSONL member, both handled by `sources`). The file is streamed from the
download straight into a resumable build (`resume`): no copy of it is kept on
disk, passage order and ids are kept (`doc_id` = the corpus `id`), and
`limit` takes the first N passages.

`plan()` resolves the revision to a commit and returns a `PullPlan` with the
estimate printed before anything starts (download size, passages, index size
on disk, time, free disk). The per-passage figures come from a measured build
(`INDEX_BYTES_PER_PASSAGE`, `PASSAGES_PER_SECOND`; see docs/wiki-18.md).
`run()` builds into `.partial-<key>` inside the index folder, the key being
repo, commit, file and ranking profile: a pull killed at any point is resumed
by the same command (the committed passages are skipped, not re-indexed),
`restart=True` drops the kept part. The live index of the same name stays
searchable until the new one is complete. A complete download is checked
against the sha256 the Hub publishes before the new index goes live.

When the file is already in the Hugging Face cache (e.g. `hf download`), it
is read from there instead of the network.

Not covered: the paper's dense (e5) index, other Wikipedia snapshots' defaults.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.build import ProgressFn
from edgeagent.wiki.passages import SourcePassage
from edgeagent.wiki.remote import HubFile, HubStream, resolve
from edgeagent.wiki.resume import build_resumable, committed_passages, read_state, write_state
from edgeagent.wiki.schema import DEFAULT_PROFILE
from edgeagent.wiki.sources import Source
from edgeagent.wiki.store import IndexMeta

WIKI18_REPO = "PeterJinGo/wiki-18-corpus"
WIKI18_FILE = "wiki-18.jsonl.gz"
WIKI18_PASSAGES = 21_015_324
WIKI18_NAME = "wiki-18"
WIKI18_ATTRIBUTION = ("English Wikipedia, 20 Dec 2018 dump, in DPR's 100-word passages "
                      "(Karpukhin et al. 2020), by Wikipedia contributors; via Search-R1's "
                      f"{WIKI18_REPO}")
WIKI18_LICENSE = "CC-BY-SA-3.0"
# Measured on the 2M-passage build of docs/wiki-18.md (entity profile, 2 writer threads, a
# busy 2-core machine): 451 bytes/passage (+ a margin for the real vocabulary), 1,685/s; the
# build wrote 2.04x the final index, so up to twice its size is needed while segments merge.
INDEX_BYTES_PER_PASSAGE = 460
PASSAGES_PER_SECOND = 1_700
MERGE_HEADROOM = 2.0
COMPRESSED_BYTES_PER_PASSAGE = 5_123_307_260 / WIKI18_PASSAGES  # the real file's ratio
DEFAULT_CHECKPOINT = 250_000


@dataclass(frozen=True)
class PullPlan:
    """What a pull will do and what it will cost, known before it starts."""

    name: str
    file: HubFile
    limit: int | None
    passages: int  # expected passages to index (estimate)
    download_bytes: int
    index_bytes: int
    seconds: float
    free_bytes: int
    workdir: Path
    resume_from: int  # passages already indexed by an earlier, interrupted pull
    local_copy: Path | None  # the file in the Hugging Face cache, read instead of the network

    def describe(self) -> str:
        f = self.file
        lines = [f"{f.repo}@{f.commit[:12]}:{f.filename}"
                 + (f" ({_gb(f.size)} compressed)" if f.size else "")]
        part = "the first " if self.limit is not None else ""
        where = (f"read from the Hugging Face cache ({self.local_copy})" if self.local_copy
                 else f"downloads ≈ {_gb(self.download_bytes)}, streamed (nothing stored)")
        lines.append(f"  {part}{self.passages:,} passages: {where}")
        lines.append(f"  index ≈ {_gb(self.index_bytes)} on disk, up to "
                     f"{_gb(int(self.index_bytes * MERGE_HEADROOM))} while it merges "
                     f"(free: {_gb(self.free_bytes)})")
        lines.append(f"  ≈ {_duration(self.seconds)} at ~{PASSAGES_PER_SECOND:,} passages/s "
                     "(measured on 2 busy cores; faster on an idle machine)")
        if self.resume_from:
            lines.append(f"  resuming: {self.resume_from:,} passages already indexed "
                         "(re-read, not re-indexed)")
        return "\n".join(lines)


def _gb(n: int | None) -> str:
    if n is None:
        return "? GB"
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def work_key(file: HubFile, profile: str) -> str:
    text = f"{file.repo}@{file.commit}:{file.filename}:{profile}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _cached_copy(file: HubFile) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(file.repo, file.filename, revision=file.commit,
                                   repo_type="dataset")
    return Path(found) if isinstance(found, str) else None


def plan(name: str = WIKI18_NAME, *, repo: str = WIKI18_REPO, filename: str = WIKI18_FILE,
         revision: str = "main", limit: int | None = None, profile: str = DEFAULT_PROFILE,
         force: bool = False, root: Path | None = None) -> PullPlan:
    """Resolve the file on the Hub and estimate the pull (no indexing yet)."""
    store.check_name(name)
    _check_free_name(name, force, root)
    if limit is not None and limit <= 0:
        raise UserError("--limit must be a positive number of passages")
    file = resolve(repo, filename, revision)
    size = file.size
    if repo == WIKI18_REPO and filename == WIKI18_FILE:
        total = WIKI18_PASSAGES
    else:  # another corpus: guess from its compressed size at wiki-18's ratio
        total = int(size / COMPRESSED_BYTES_PER_PASSAGE) if size else 0
    passages = min(limit, total) if limit is not None and total else (limit or total)
    download = size or 0
    if limit is not None:
        download = min(download or limit * 10**9, int(limit * COMPRESSED_BYTES_PER_PASSAGE))
    workdir = store.index_dir(name, root) / f".partial-{work_key(file, profile)}"
    resume_from = committed_passages(workdir) if workdir.is_dir() else 0
    # the reading thread (JSON, analysis) bounds the rate, not the writer threads
    rate = PASSAGES_PER_SECOND
    existing = store.root_dir(root).resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the disk the index folder will be made on
    free = shutil.disk_usage(existing).free
    return PullPlan(name=name, file=file, limit=limit, passages=passages,
                    download_bytes=download, index_bytes=passages * INDEX_BYTES_PER_PASSAGE,
                    seconds=max(0, passages - resume_from) / rate, free_bytes=free,
                    workdir=workdir, resume_from=resume_from, local_copy=_cached_copy(file))


def _check_free_name(name: str, force: bool, root: Path | None) -> None:
    if not force and store.read_meta(name, root) is not None:
        raise UserError(f"a wiki index named {name!r} already exists; use --force to replace "
                        "it (it stays searchable until the new one is complete)")


def _drop_other_partials(p: PullPlan) -> None:
    folder = p.workdir.parent
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(".partial-") and child != p.workdir:
            shutil.rmtree(child, ignore_errors=True)


def run(p: PullPlan, *, force: bool = False, restart: bool = False,
        profile: str = DEFAULT_PROFILE, threads: int | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT, progress: ProgressFn | None = None,
        root: Path | None = None, say: Callable[[str], None] = lambda line: None) -> IndexMeta:
    """Build (or resume building) the index `p.name` from the planned file."""
    _check_free_name(p.name, force, root)
    need = int(max(0, p.index_bytes - p.resume_from * INDEX_BYTES_PER_PASSAGE) * MERGE_HEADROOM)
    if need > p.free_bytes:
        raise UserError(f"not enough disk for the index: ≈ {_gb(need)} needed while it "
                        f"builds, {_gb(p.free_bytes)} free; free space or pass --limit N")
    _drop_other_partials(p)
    resume_from = p.resume_from
    if p.workdir.is_dir() and (restart or (p.limit is not None and resume_from > p.limit)):
        shutil.rmtree(p.workdir)
        resume_from = 0
        say("starting over: the kept part of the earlier pull was removed")
    p.workdir.mkdir(parents=True, exist_ok=True)
    file = p.file
    write_state(p.workdir, dict(read_state(p.workdir), repo=file.repo, commit=file.commit,
                                file=file.filename, profile=profile))
    streams: list[HubStream] = []
    finished: list[bool] = []

    def opener() -> HubStream:
        stream = HubStream(file)
        streams.append(stream)
        return stream

    if p.local_copy is not None:
        source = Source(p.local_copy, "jsonl", split=False)
    else:
        source = Source.from_stream(file.filename, opener, size=file.size, fmt="jsonl",
                                    split=False)

    def passages() -> Iterator[SourcePassage]:
        yield from source.passages()
        finished.append(True)

    extra: dict[str, object] = {"repo": file.repo, "revision": file.revision,
                                 "commit": file.commit, "file": file.filename, "limit": p.limit,
                                 "sha256": file.sha256, "verified": None}

    def check_download() -> None:
        if not finished or not streams:
            return  # a partial read (--limit) or a local file: nothing to check
        stream = streams[-1]
        extra["verified"] = stream.verified
        if stream.verified is False:
            shutil.rmtree(p.workdir, ignore_errors=True)
            raise UserError(f"{file.filename}: sha256 {stream.hexdigest()} does not match the "
                            f"Hub's {file.sha256}; the new index was discarded", exit_code=3)

    return build_resumable(
        p.name, passages, workdir=p.workdir,
        source=f"hf://datasets/{file.repo}@{file.commit}/{file.filename}", fmt="jsonl",
        profile=profile, limit=p.limit, checkpoint_every=checkpoint_every,
        attribution=WIKI18_ATTRIBUTION if file.repo == WIKI18_REPO else file.repo,
        license=WIKI18_LICENSE if file.repo == WIKI18_REPO else "", threads=threads,
        progress=progress, position=source.position, bytes_total=file.size,
        before_commit=check_download, root=root,
        extra=extra,
    )
