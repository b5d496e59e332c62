"""`edgeagent wiki build|pull|list|search|rm|starter`: manage local Wikipedia indexes.

Top-level imports stay light (argparse only); Tantivy, rich and the builders
are imported inside the handlers. Bad input raises `UserError` (one line,
non-zero exit, no traceback).

Not covered: the `web_search` tool wiring (agent/tools) and benchmarks (`bench wiki`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeagent.wiki.retrieval import RETRIEVAL_PROFILES

if TYPE_CHECKING:
    from edgeagent.wiki.build import BuildStatus, ProgressFn

_WIKI18 = "PeterJinGo/wiki-18-corpus wiki-18.jsonl.gz"


def register(sub: Any) -> None:
    """Add the `wiki` command group to the top-level subparsers action."""
    wiki = sub.add_parser("wiki", help="build, list, search and remove local Wikipedia indexes",
                          description="Local Wikipedia indexes (Tantivy BM25).")
    cmds = wiki.add_subparsers(dest="wiki_command", metavar="SUBCOMMAND")

    build = cmds.add_parser(
        "build", help="build an index from a JSONL(.gz), DPR TSV or MediaWiki .xml.bz2 file",
        description="Build index NAME from SOURCE into a temp folder, then swap it in "
        "atomically (an interrupted build leaves the previous index as it was).")
    build.add_argument("name", metavar="NAME")
    build.add_argument("--from", dest="source", required=True, metavar="SOURCE", type=Path,
                       help="JSONL(.gz/.bz2) {title,text} or {id,contents}; DPR TSV; "
                       "MediaWiki XML dump (.xml/.xml.bz2)")
    build.add_argument("--format", default="auto",
                       choices=("auto", "jsonl", "dpr-tsv", "mediawiki"),
                       help="source format (default: from the file name and contents)")
    build.add_argument("--limit", type=int, default=None, metavar="N",
                       help="index at most N passages")
    build.add_argument("--no-split", action="store_true",
                       help="JSONL {title,text} records are already passages: keep each whole")
    build.add_argument("--force", action="store_true", help="replace an existing index NAME")
    build.add_argument("--threads", type=int, default=None, metavar="N",
                       help="index writer threads (default: CPUs, at most 4)")
    build.add_argument("--attribution", default="", help="attribution text shown by `wiki list`")
    build.add_argument("--license", default="", help="license of the source text")
    build.add_argument("--profile", default="bm25",
                       choices=tuple(RETRIEVAL_PROFILES),
                       help="retrieval profile searches use (default bm25; bm25+vectors "
                       "implies --embed)")
    build.add_argument("--embed", nargs="?", const="int8", default=None,
                       choices=("int8", "binary"),
                       help="store passage vectors beside the index (default int8)")
    build.add_argument("--embed-model", default=None, metavar="NAME|GGUF",
                       help="embedding model of the second stage: all-MiniLM-L6-v2 (default) "
                       "or multilingual-e5-small (fetched on first use), or a GGUF path")
    build.set_defaults(handler=_build)

    pull = cmds.add_parser(
        "pull", help="the paper's Wikipedia (wiki-18, 21M passages) from the Hugging Face Hub",
        description="Stream a corpus file of a Hub dataset repo (default: the paper's "
        f"wiki-18, {_WIKI18}) into index NAME. Prints the download, disk and time estimate "
        "first; a pull that is interrupted resumes when run again; the previous index NAME "
        "stays searchable until the new one is complete.")
    pull.add_argument("name", metavar="NAME", nargs="?", default="wiki-18",
                      help="index name (default: wiki-18)")
    pull.add_argument("--repo", default="PeterJinGo/wiki-18-corpus",
                      help="dataset repo (default: PeterJinGo/wiki-18-corpus)")
    pull.add_argument("--file", default="wiki-18.jsonl.gz",
                      help="file in the repo: {id, contents} JSON Lines, .gz or gzip of a tar")
    pull.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    pull.add_argument("--limit", type=int, default=None, metavar="N",
                      help="index only the first N passages")
    pull.add_argument("--force", action="store_true", help="replace an existing index NAME")
    pull.add_argument("--restart", action="store_true",
                      help="drop what an interrupted pull kept and start from the first passage")
    pull.add_argument("--dry-run", action="store_true",
                      help="print the estimate and stop")
    pull.add_argument("--threads", type=int, default=None, metavar="N",
                      help="index writer threads (default: CPUs, at most 4)")
    pull.add_argument("--checkpoint-every", type=int, default=250_000, metavar="N",
                      help="commit every N passages; a resume restarts from the last commit "
                      "(default 250000)")
    pull.set_defaults(handler=_pull)

    lst = cmds.add_parser("list", help="list indexes with their size, source and attribution")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(handler=_list)

    search = cmds.add_parser("search", help="search an index")
    search.add_argument("name", metavar="NAME")
    search.add_argument("query", metavar="QUERY", nargs="+")
    search.add_argument("-k", type=int, default=3, help="number of passages (default 3)")
    search.add_argument("--retrieval", default=None,
                        choices=tuple(RETRIEVAL_PROFILES),
                        help="retrieval profile (default: the index's own)")
    out = search.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--tool", action="store_true",
                     help="print exactly what the agent's web_search tool returns")
    search.set_defaults(handler=_search)

    rm = cmds.add_parser("rm", help="remove an index")
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(handler=_rm)

    starter = cmds.add_parser(
        "starter", help="build (or with --force refresh) the starter index of 10k vital articles")
    starter.add_argument("--force", action="store_true", help="rebuild even if it exists")
    starter.set_defaults(handler=_starter)


def _build(args: argparse.Namespace) -> int:
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.embed_build import check_options
    from edgeagent.wiki.embed_model import model_choice

    embed = check_options(args.profile, args.embed)
    model_choice(args.embed_model)  # a bad --embed-model fails before the build, not after
    with _index_progress(f"wiki {args.name}") as progress:
        meta = build_from_file(
            args.name, args.source, fmt=args.format, limit=args.limit, split=not args.no_split,
            force=args.force, attribution=args.attribution, license=args.license,
            threads=args.threads, progress=progress,
        )
    rate = meta.passages / meta.build_seconds if meta.build_seconds else 0.0
    print(f"built wiki index {meta.name!r}: {meta.passages:,} passages ({meta.format}) "
          f"in {meta.build_seconds:.1f} s, {rate:,.0f} passages/s")
    if args.profile != "bm25" or embed or args.embed_model:
        _finish_retrieval(args, embed)
    return 0


def _finish_retrieval(args: argparse.Namespace, embed: str | None) -> None:
    from edgeagent.wiki.embed_build import finish_retrieval, rich_embed_progress

    with rich_embed_progress(f"embed {args.name}") as progress:
        vectors = finish_retrieval(args.name, profile=args.profile, embed=embed,
                                   embed_model=args.embed_model, progress=progress,
                                   threads=args.threads)
    if vectors is not None:
        print(f"embedded {vectors.count:,} passages ({vectors.quant}, {vectors.dim} dims, "
              f"{vectors.model_id}) in {vectors.seconds:.1f} s, "
              f"{vectors.passages_per_s:,.0f} passages/s")
    print(f"retrieval profile: {args.profile}")


def _pull(args: argparse.Namespace) -> int:
    from edgeagent.wiki import pull

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    p = pull.plan(args.name, repo=args.repo, filename=args.file, revision=args.revision,
                  limit=args.limit, force=args.force)
    say(p.describe())
    if args.dry_run:
        return 0
    try:
        with _index_progress(f"wiki {args.name}", plain_every=15.0) as progress:
            meta = pull.run(p, force=args.force, restart=args.restart, threads=args.threads,
                            checkpoint_every=args.checkpoint_every, progress=progress, say=say)
    except KeyboardInterrupt:
        from edgeagent.wiki.resume import committed_passages

        kept = committed_passages(p.workdir)
        say(f"edgeagent: interrupted; {kept:,} passages kept, run the same command to resume")
        return 130
    rate = meta.passages / meta.build_seconds if meta.build_seconds else 0.0
    resumed = meta.extra.get("resumed_at") or 0
    note = f" (resumed at {resumed:,})" if resumed else ""
    print(f"pulled wiki index {meta.name!r}: {meta.passages:,} passages{note} "
          f"in {meta.build_seconds:.1f} s, {rate:,.0f} passages/s")
    return 0


def _list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from edgeagent.locations import wiki_dir
    from edgeagent.wiki.store import list_indexes

    metas = list_indexes()
    if args.json:
        print(json.dumps([asdict(m) for m in metas], ensure_ascii=False, indent=2))
        return 0
    if not metas:
        print(f"no wiki indexes in {wiki_dir()}; run `edgeagent wiki starter` or "
              "`edgeagent wiki build NAME --from FILE`")
        return 0
    for m in metas:
        print(f"{m.name}\t{m.passages:,} passages\t{m.profile}\t{m.created}\t{m.source}")
        if m.attribution or m.license:
            print(f"    {m.attribution}" + (f" [{m.license}]" if m.license else ""))
    return 0


def _search(args: argparse.Namespace) -> int:
    from edgeagent.errors import UserError
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.tool import format_web_search

    if args.k <= 0:
        raise UserError("-k must be a positive number")
    query = " ".join(args.query)
    hits = WikiIndex.open(args.name, retrieval=args.retrieval).search(query, args.k)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
    elif args.tool:
        print(format_web_search(hits))
    elif not hits:
        print("no passages found", file=sys.stderr)
        return 1
    else:
        for i, h in enumerate(hits, 1):
            print(f"{i}. {h.title}  (score {h.score:.2f}, {h.doc_id})\n   {h.text}\n")
    return 0


def _rm(args: argparse.Namespace) -> int:
    from edgeagent.wiki.store import remove_index

    remove_index(args.name)
    print(f"removed wiki index {args.name!r}")
    return 0


def _starter(args: argparse.Namespace) -> int:
    from edgeagent.wiki.starter import STARTER_NAME, ensure_starter_index
    from edgeagent.wiki.store import read_meta

    with _index_progress("wiki starter") as progress:
        ensure_starter_index(progress, force=args.force)
    meta = read_meta(STARTER_NAME)
    if meta is not None:
        print(f"wiki index {STARTER_NAME!r} ready: {meta.passages:,} passages\n"
              f"    {meta.attribution}")
    return 0


@contextmanager
def _index_progress(label: str, plain_every: float | None = None) -> Iterator[ProgressFn]:
    """A bar over the source bytes read, with passages and passages/s (terminal only).

    With `plain_every=S`, a stderr that is not a terminal gets a plain line every S
    seconds instead (long pulls in logs and CI).
    """
    from edgeagent.progress import progress_bar

    bar = progress_bar("{task.fields[passages]:,} passages",
                       "{task.fields[rate]:,.0f} passages/s", unit="bytes")
    if bar.disable and plain_every:
        yield _plain_progress(label, plain_every)
        return
    with bar:
        task = bar.add_task(label, total=None, passages=0, rate=0.0)

        def update(status: BuildStatus) -> None:
            bar.update(
                task,
                description=f"{label} ({status.phase})" if status.phase != "indexing" else label,
                total=status.bytes_total,
                completed=status.bytes_total if status.phase == "done" and status.bytes_total
                else status.bytes_read,
                passages=status.passages,
                rate=status.passages_per_s,
            )

        yield update


def _plain_progress(label: str, every: float) -> ProgressFn:
    import time

    last = [time.monotonic()]

    def update(status: BuildStatus) -> None:
        now = time.monotonic()
        if now - last[0] < every and status.phase in ("indexing", "skipping"):
            return
        last[0] = now
        total = f" of {status.bytes_total / 1e6:,.0f}" if status.bytes_total else ""
        print(f"{label}: {status.phase}, {status.passages:,} passages, "
              f"{status.bytes_read / 1e6:,.0f}{total} MB read, "
              f"{status.passages_per_s:,.0f} passages/s", file=sys.stderr, flush=True)

    return update
