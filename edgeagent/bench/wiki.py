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

Data is read from `--data DIR` (default: `../shared/data` next to the repo).
Not covered: dense retrieval baselines, memory use.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from edgeagent.errors import UserError


def _default_data_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", help="measure query latency on this existing index")
    parser.add_argument("--data", type=Path, default=None,
                        help="shared data folder (default: ../shared/data)")
    parser.add_argument("--limit", type=int, default=None,
                        help="index at most N passages of the scale corpus")
    parser.add_argument("--threads", type=int, default=None, help="index writer threads")
    parser.add_argument("--queries", type=int, default=500,
                        help="number of latency queries (default 500)")
    parser.add_argument("--skip-recall", action="store_true", help="skip the recall part")


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[pos]


def run(args: argparse.Namespace) -> dict[str, object]:
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.recall import load_gold_questions, recall_at_k

    data: Path = getattr(args, "data", None) or _default_data_dir()
    gold_path = data / "retrieval" / "hotpotqa_gold_titles.jsonl"
    seed_path = data / "wiki" / "multihop_paragraphs.jsonl.gz"
    scale_path = data / "wiki" / "wikitasks_articles.jsonl.gz"
    for p in (gold_path, seed_path, scale_path):
        if not p.exists():
            raise UserError(f"benchmark data missing: {p} (pass --data DIR)")
    questions = load_gold_questions(gold_path, only_in_seed=False)
    result: dict[str, object] = {}
    threads = getattr(args, "threads", None)

    with tempfile.TemporaryDirectory(prefix="edgeagent-bench-wiki-") as tmp:
        root = Path(tmp)
        index_name = getattr(args, "index", None)
        if index_name:
            index = WikiIndex.open(index_name)
            result["index"] = index_name
            result["passages"] = len(index)
            result["index_mb"] = round(_dir_mb(index.path), 1)
        else:
            started = time.perf_counter()
            meta = build_from_file("scale", scale_path, limit=getattr(args, "limit", None),
                                   threads=threads, root=root)
            seconds = time.perf_counter() - started
            index = WikiIndex.open("scale", root=root)
            result["index"] = scale_path.name
            result["passages"] = meta.passages
            result["build_seconds"] = round(seconds, 2)
            result["build_passages_per_s"] = round(meta.passages / seconds)
            result["index_mb"] = round(_dir_mb(index.path), 1)
        n_queries = max(1, int(getattr(args, "queries", 500) or 500))
        texts = [q.question for q in questions][:n_queries]
        for text in texts[:20]:  # warm the page cache and the searcher
            index.search(text, 3)
        times: list[float] = []
        for text in texts:
            t0 = time.perf_counter()
            index.search(text, 3)
            times.append((time.perf_counter() - t0) * 1000)
        result["queries"] = len(times)
        result["query_p50_ms"] = round(statistics.median(times), 3)
        result["query_p95_ms"] = round(_percentile(times, 0.95), 3)
        del index

        if not getattr(args, "skip_recall", False):
            seed_questions = [q for q in load_gold_questions(gold_path)]
            result["recall_questions"] = len(seed_questions)
            for profile in ("naive", "entity"):
                build_from_file(profile, seed_path, profile=profile, threads=threads, root=root,
                                split=False)  # already paragraphs
                scores = recall_at_k(WikiIndex.open(profile, root=root), seed_questions, (3, 10))
                prefix = "" if profile == "entity" else "naive_"
                result[f"{prefix}recall_at_3"] = round(scores[3], 3)
                result[f"{prefix}recall_at_10"] = round(scores[10], 3)
    result["profile"] = "entity"
    return result
