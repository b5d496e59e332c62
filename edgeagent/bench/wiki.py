"""`edgeagent bench wiki`: build speed, query latency and retrieval recall, in one run.

- Scale: builds an index of `wiki/wikitasks_articles.jsonl.gz` (27k articles,
  ~129k passages; `--limit N` passages for a quick run) in a temp folder and
  times it (`build_passages_per_s`, `index_mb`), then times top-3 searches of
  the HotpotQA questions on it (`query_p50_ms`, `query_p95_ms`). With
  `--index NAME` the latency is measured on that existing index instead, and
  nothing is built for scale.
- Recall: builds `wiki/multihop_paragraphs.jsonl.gz` twice, with the `naive`
  profile (BM25 over text, the issue's baseline) and the default `entity`
  profile (the paragraphs indexed as they are, one passage each), and
  scores recall@3 / recall@10 on the `gold_in_seed` questions of
  `retrieval/hotpotqa_gold_titles.jsonl`. Both numbers come from this run.

- Retrieval profiles (`--profiles`, default all four: `bm25`, `bm25+links`,
  `bm25+rerank`, `bm25+vectors`), side by side on the `entity` multihop index: recall@3,
  recall@10 and per-query p50/p95 latency (top-10 searches, second stage
  included) under `profiles`. The passages are embedded once for
  `bm25+vectors` (timed: `embed_passages_per_s`, and
  `build_with_embed_passages_per_s` for Tantivy plus vectors); `bm25+rerank`
  starts with an empty passage cache, so its latency includes embedding the
  candidates it has not seen yet. `--fusion both` adds `rrf` and `linear` rows,
  `--candidates 10,50,100` one row per depth, `--links 0` turns the title links
  off; `--split tune|held` scores the first or the second half of the questions
  only (choose settings on one half, report the other).
  `--recall-index NAME` uses an existing index (built with `--embed`) instead.

Data is read from `--data DIR` (required). Not covered: memory use.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeagent.bench.report import percentile
from edgeagent.errors import UserError

RETRIEVAL_NAMES: tuple[str, ...] = ("bm25", "bm25+links", "bm25+rerank", "bm25+vectors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", help="measure query latency on this existing index")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="benchmark data folder (required; holds wiki/ and retrieval/)")
    parser.add_argument("--limit", type=int, default=None,
                        help="index at most N passages of the scale corpus")
    parser.add_argument("--threads", type=int, default=None, help="index writer threads")
    parser.add_argument("--queries", type=int, default=500,
                        help="number of latency queries (default 500)")
    parser.add_argument("--skip-recall", action="store_true", help="skip the recall part")
    parser.add_argument("--skip-scale", action="store_true",
                        help="skip the build-speed / BM25 latency part")
    parser.add_argument("--profiles", default=",".join(RETRIEVAL_NAMES),
                        help="retrieval profiles to compare (comma-separated; default all)")
    parser.add_argument("--fusion", choices=("rrf", "linear", "both"), default=None,
                        help="fusion of the second stage (default: each profile's own)")
    parser.add_argument("--candidates", default=None, metavar="N[,N...]",
                        help="BM25 candidates re-scored, one depth or several side by side "
                             "(e.g. 10,50,100; default: each profile's own)")
    parser.add_argument("--links", type=int, default=None, metavar="N",
                        help="top passages whose text names candidates moved up (0: off; "
                             "default: each profile's own)")
    parser.add_argument("--embed-model", default=None, metavar="NAME|GGUF",
                        help="embedding model: all-MiniLM-L6-v2 (default), "
                             "multilingual-e5-small, or a GGUF path")
    parser.add_argument("--split", choices=("all", "tune", "held"), default="all",
                        help="recall questions: all, the first half (tune) or the second "
                             "half (held: report settings chosen on the first)")
    parser.add_argument("--recall-index", default=None, metavar="NAME",
                        help="measure recall on this existing multihop index (with --embed)")


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _profile_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in RETRIEVAL_NAMES:
            raise UserError(f"unknown retrieval profile {name!r}; use {', '.join(RETRIEVAL_NAMES)}")
    if not names:
        raise UserError("--profiles lists no profile")
    return list(dict.fromkeys(names))


def _depths(value: object) -> list[int | None]:
    """`--candidates`: None (each profile's own depth) or the depths to compare."""
    if value is None:
        return [None]
    try:
        depths = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--candidates takes numbers like 10,50,100, not {value!r}") from None
    if not depths or min(depths) < 1:
        raise UserError(f"--candidates takes positive numbers, not {value!r}")
    return list(dict.fromkeys(depths))


def split_questions(questions: list[Any], split: str) -> list[Any]:
    """All questions, the first half (`tune`) or the second half (`held`)."""
    half = len(questions) // 2
    if split == "tune":
        return questions[:half]
    if split == "held":
        return questions[half:]
    return questions


def run(args: argparse.Namespace) -> dict[str, object]:
    from edgeagent.wiki.recall import load_gold_questions

    data: Path | None = getattr(args, "data", None)
    if data is None:
        raise UserError("bench wiki needs --data DIR (the folder with wiki/ and retrieval/)")
    profiles = _profile_list(str(getattr(args, "profiles", None) or ",".join(RETRIEVAL_NAMES)))
    _depths(getattr(args, "candidates", None))  # bad input fails before any build
    gold_path = data / "retrieval" / "hotpotqa_gold_titles.jsonl"
    seed_path = data / "wiki" / "multihop_paragraphs.jsonl.gz"
    scale_path = data / "wiki" / "wikitasks_articles.jsonl.gz"
    needed = [gold_path]
    if not getattr(args, "skip_scale", False) and not getattr(args, "index", None):
        needed.append(scale_path)
    if not getattr(args, "skip_recall", False) and not getattr(args, "recall_index", None):
        needed.append(seed_path)
    for p in needed:
        if not p.exists():
            raise UserError(f"benchmark data missing: {p} (pass --data DIR)")
    result: dict[str, object] = {}
    # Tantivy's reader threads of the indexes opened here may still touch their folders
    # while the temp folder is removed ("Directory not empty"): never fail the bench on it.
    with tempfile.TemporaryDirectory(prefix="edgeagent-bench-wiki-",
                                     ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        if not getattr(args, "skip_scale", False):
            questions = load_gold_questions(gold_path, only_in_seed=False)
            _scale(args, root, scale_path, [q.question for q in questions], result)
        if not getattr(args, "skip_recall", False):
            _recall(args, root, seed_path, gold_path, profiles, result)
    result["profile"] = "entity"
    return result


def _scale(args: argparse.Namespace, root: Path, scale_path: Path, texts: list[str],
           result: dict[str, object]) -> None:
    """Build speed of the large corpus and BM25 top-3 latency (or on `--index`)."""
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.index import WikiIndex

    index_name = getattr(args, "index", None)
    if index_name:
        index = WikiIndex.open(index_name, retrieval="bm25")
        result["index"] = index_name
        result["passages"] = len(index)
        result["index_mb"] = round(_dir_mb(index.path), 1)
    else:
        started = time.perf_counter()
        meta = build_from_file("scale", scale_path, limit=getattr(args, "limit", None),
                               threads=getattr(args, "threads", None), root=root)
        seconds = time.perf_counter() - started
        index = WikiIndex.open("scale", root=root)
        result["index"] = scale_path.name
        result["passages"] = meta.passages
        result["build_seconds"] = round(seconds, 2)
        result["build_passages_per_s"] = round(meta.passages / seconds)
        result["index_mb"] = round(_dir_mb(index.path), 1)
    n_queries = max(1, int(getattr(args, "queries", 500) or 500))
    texts = texts[:n_queries]
    for text in texts[:20]:  # warm the page cache and the searcher
        index.search(text, 3)
    times: list[float] = []
    for text in texts:
        t0 = time.perf_counter()
        index.search(text, 3)
        times.append((time.perf_counter() - t0) * 1000)
    result["queries"] = len(times)
    result["query_p50_ms"] = round(statistics.median(times), 3)
    result["query_p95_ms"] = round(percentile(times, 0.95), 3)


def _recall(args: argparse.Namespace, root: Path, seed_path: Path, gold_path: Path,
            profiles: list[str], result: dict[str, object]) -> None:
    """Recall@3/@10 and latency of each retrieval profile on the multihop index."""
    from edgeagent.wiki import store
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.recall import load_gold_questions, recall_at_k
    from edgeagent.wiki.retrieval import get_profile, read_settings
    from edgeagent.wiki.vectors import read_vector_meta

    threads = getattr(args, "threads", None)
    embed_model: str | None = getattr(args, "embed_model", None)
    questions = split_questions(load_gold_questions(gold_path),
                                str(getattr(args, "split", None) or "all"))
    result["recall_questions"] = len(questions)
    name: str = getattr(args, "recall_index", None) or "entity"
    where: Path | None = None if getattr(args, "recall_index", None) else root
    if where is not None:
        naive = build_from_file("naive", seed_path, profile="naive", threads=threads, root=root,
                                split=False)  # already paragraphs
        scores = recall_at_k(WikiIndex.open(naive.name, root=root), questions, (3, 10))
        result["naive_recall_at_3"] = round(scores[3], 3)
        result["naive_recall_at_10"] = round(scores[10], 3)
        meta = build_from_file(name, seed_path, threads=threads, root=root, split=False)
        result["recall_passages"] = meta.passages
        result["recall_build_passages_per_s"] = round(meta.passages / meta.build_seconds)
    _, folder = store.live_path(name, where)
    embed_model = embed_model or read_settings(folder).embed_model  # what the index records
    if "bm25+vectors" in profiles and read_vector_meta(folder) is None:
        vectors = finish_retrieval(name, embed="int8", embed_model=embed_model, root=where)
        assert vectors is not None
        build_s = store.read_meta(name, where).build_seconds  # type: ignore[union-attr]
        result["embed_model"] = vectors.model_id
        result["embed_passages_per_s"] = round(vectors.passages_per_s, 1)
        result["build_with_embed_passages_per_s"] = round(
            vectors.count / (build_s + vectors.seconds), 1)
        result["vectors_mb"] = round(sum(f.stat().st_size
                                         for f in folder.glob("vectors.*")) / 1e6, 2)
    fusion = getattr(args, "fusion", None)
    depths = _depths(getattr(args, "candidates", None))
    rows: dict[str, dict[str, float]] = {}
    for profile in profiles:
        model = get_profile(profile).needs_model
        fusions = [None] if fusion is None or not model else (
            ["rrf", "linear"] if fusion == "both" else [fusion])
        for fu, depth in [(f, d) for f in fusions
                          for d in (depths if profile != "bm25" else [None])]:
            spec = get_profile(profile, fusion=fu, candidates=depth,
                               links=getattr(args, "links", None), embed_model=embed_model)
            label = profile if fu is None else f"{profile}/{fu}"
            if len(depths) > 1 and depth is not None:
                label += f"/c{depth}"
            index = WikiIndex.open(name, root=where, retrieval=spec, embed_model=embed_model)
            stage = index.second_stage()  # the model loads here, outside the timings
            cached = len(stage.cache) if stage is not None and stage.cache is not None else None
            rows[label] = _measure(index, questions, recall_at_k)
            if cached is not None:  # bm25+rerank: passages already embedded at the start
                rows[label]["cached_at_start"] = cached
    result["profiles"] = rows
    result["split"] = str(getattr(args, "split", None) or "all")
    if "bm25" in rows:
        result["recall_at_3"] = rows["bm25"]["recall_at_3"]
        result["recall_at_10"] = rows["bm25"]["recall_at_10"]


def _measure(index: object, questions: list[Any], recall_at_k: Any) -> dict[str, float]:
    """Recall@3/@10 of `index` with each top-10 search timed."""
    times: list[float] = []
    search = index.search  # type: ignore[attr-defined]

    class Timed:
        def search(self, query: str, k: int = 3) -> list[Any]:
            t0 = time.perf_counter()
            hits = search(query, k)
            times.append((time.perf_counter() - t0) * 1000)
            return list(hits)

    scores = recall_at_k(Timed(), questions, (3, 10))
    return {"recall_at_3": round(scores[3], 3), "recall_at_10": round(scores[10], 3),
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(percentile(times, 0.95), 2), "queries": len(times)}
