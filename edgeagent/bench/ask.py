"""`edgeagent bench ask`: the whole agent on real benchmark questions, votes 8 vs 1.

    edgeagent bench ask --bench gsm8k --limit 20 --votes 1,8 [--policies quorum,wait] --json

One engine, one run: every question is asked once per setting, the settings
taking turns question by question so that a busy CPU slows them alike. A
setting is `votes1` (greedy), or `votesN` with a straggler policy (`quorum`,
the default: the step ends once half the candidates finished; `wait`: the
paper's wait-for-all, reported as `votesN_wait`). Per setting: accuracy (the
eval scorer), wall seconds per question (p50, p90), completion tokens and steps
per question, candidates cut per voting step, and the share of wall time spent
generating, in the sandbox and in `web_search`. Headline ratios:
`votesN_vs_votes1` (median wall time per question) for each policy.

Search: `--wiki NAME` (default: the `multihop` index when it is built) for QA
benchmarks; math benchmarks run without it, as `eval` does with `--no-wiki`.

Not covered: several workers (`eval --workers`), the LLM judge.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from edgeagent.bench.report import make_report, percentile
from edgeagent.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bench", default="gsm8k", help="benchmark name or file (gsm8k)")
    parser.add_argument("--limit", type=int, default=20, help="questions (default 20)")
    parser.add_argument("--votes", default="1,8", help="vote counts to compare (default 1,8)")
    parser.add_argument("--policies", default="quorum,wait",
                        help="straggler policies for votes > 1 (default quorum,wait)")
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--wiki", default=None, help="wiki index for web_search (QA benches)")
    # the same flag as `eval` (its own dest: the top-level `--data-dir` is the home)
    parser.add_argument("--data-dir", "--data-root", dest="bench_data", default=None,
                        metavar="DIR", help="folder with the paper's data files "
                        "(benchmarks/…); offline, nothing downloaded")


def _settings(votes: str, policies: str) -> list[tuple[str, int, str]]:
    try:
        counts = [int(v) for v in votes.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--votes must be numbers like 1,8, not {votes!r}") from None
    if not counts or min(counts) < 1:
        raise UserError("--votes needs counts of at least 1")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    bad = [p for p in names if p not in ("quorum", "wait")]
    if bad or not names:
        raise UserError(f"--policies takes quorum and/or wait, not {policies!r}")
    out: list[tuple[str, int, str]] = []
    for n in dict.fromkeys(counts):
        if n == 1:
            out.append(("votes1", 1, "wait"))
        else:
            out.extend((f"votes{n}" + ("" if p == "quorum" else "_wait"), n, p) for p in names)
    return out


class _TimedSearch:
    def __init__(self, search: Any) -> None:
        self.search = search
        self.seconds = 0.0

    def __call__(self, query: str, k: int) -> Any:
        t = time.perf_counter()
        try:
            return self.search(query, k)
        finally:
            self.seconds += time.perf_counter() - t


def _open_search(args: argparse.Namespace, kind: str) -> Any:
    if kind != "qa":
        return None
    from edgeagent.wiki import store
    from edgeagent.wiki.index import WikiIndex

    name = args.wiki or "multihop"
    if store.read_meta(name) is None:
        if args.wiki:
            raise UserError(f"no wiki index named {name!r} (see `edgeagent wiki list`)")
        print("bench ask: no `multihop` index; QA questions run without web_search "
              "(build it with one `edgeagent eval --bench hotpotqa` run)", file=sys.stderr)
        return None
    return WikiIndex.open(name).search


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in rows]
    total = sum(walls) or 1.0
    gen = sum(r["generate_s"] for r in rows)
    search = sum(r["search_s"] for r in rows)
    sandbox = max(0.0, sum(r["execute_s"] for r in rows) - search)
    voting_steps = sum(r["voting_steps"] for r in rows)
    return {
        "n": len(rows),
        "accuracy": round(sum(r["correct"] for r in rows) / len(rows), 3),
        "wall_p50_s": round(statistics.median(walls), 3),
        "wall_p90_s": round(percentile(walls, 0.9), 3),
        "completion_tokens_per_question": round(
            statistics.mean(r["completion_tokens"] for r in rows), 1),
        "prompt_tokens_evaluated_per_question": round(
            statistics.mean(r["prompt_evaluated"] for r in rows), 1),
        "steps_per_question": round(statistics.mean(r["steps"] for r in rows), 2),
        "cut_per_voting_step": round(sum(r["cut"] for r in rows) / voting_steps, 2)
        if voting_steps else 0.0,
        "share": {"generate": round(gen / total, 3), "sandbox": round(sandbox / total, 3),
                  "search": round(search / total, 3),
                  "other": round(max(0.0, 1 - (gen + sandbox + search) / total), 3)},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.agent.loop import Agent, AgentConfig
    from edgeagent.engines.llamacpp import LlamaCppEngine
    from edgeagent.eval.data import data_root, load_benchmark
    from edgeagent.models.registry import resolve_model
    from edgeagent.scoring import score_answer

    if args.limit < 1:
        raise UserError("--limit must be at least 1")
    settings = _settings(args.votes, args.policies)
    bench = load_benchmark(args.bench, data_root(args.bench_data) if args.bench_data else None)
    examples = bench.examples[: args.limit]
    path = resolve_model(getattr(args, "model", None))
    search = _open_search(args, bench.kind)
    timed = _TimedSearch(search) if search is not None else None
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in settings}
    most = max(n for _, n, _ in settings)
    with LlamaCppEngine(path, n_ctx=args.n_ctx, n_threads=args.threads,
                        max_parallel=max(8, most)) as engine:
        agents = {
            name: Agent(engine, search=timed, config=AgentConfig(
                votes=n, max_steps=args.max_steps, max_tokens=args.max_tokens,
                seed=args.seed, straggler="quorum" if policy == "quorum" else "wait"))
            for name, n, policy in settings
        }
        for q, ex in enumerate(examples, 1):
            for name, _, _ in settings:
                if timed is not None:
                    timed.seconds = 0.0
                started = time.perf_counter()
                traj = agents[name].run(ex.question, task_id=ex.id, gold=ex.gold,
                                        dataset=bench.name)
                wall = time.perf_counter() - started
                score = score_answer(traj.answer, ex.gold, kind=bench.kind,
                                     dataset=bench.name, question=ex.question)
                voting = [s for s in traj.steps if s.candidates is not None]
                rows[name].append({
                    "wall_s": wall, "correct": bool(score.correct),
                    "generate_s": float(traj.timings.get("generate_s", 0.0)),
                    "execute_s": float(traj.timings.get("execute_s", 0.0)),
                    "search_s": timed.seconds if timed is not None else 0.0,
                    "completion_tokens": int(traj.tokens.get("completion", 0)),
                    "prompt_evaluated": int(traj.tokens.get("prompt_evaluated", 0)),
                    "steps": len(traj.steps), "voting_steps": len(voting),
                    "cut": sum(1 for s in voting for c in s.candidates or [] if c.cut),
                })
                print(f"bench ask: question {q}/{len(examples)} {name}: {wall:.1f}s, "
                      f"{'right' if score.correct else 'wrong'}", file=sys.stderr, flush=True)
        info = engine.info()
    per = {name: _summary(r) for name, r in rows.items()}
    ratio: dict[str, float] = {}
    if "votes1" in per:
        base = per["votes1"]["wall_p50_s"] or 1e-9
        for name, _, _ in settings:
            if name != "votes1":
                ratio[f"{name}_vs_votes1"] = round(per[name]["wall_p50_s"] / base, 3)
    return make_report(
        "ask", model=info["name"],
        baseline="votes 1 (greedy) on the same questions in the same run",
        ratio=ratio, bench=bench.name, questions=len(examples), quant=info["quant"],
        threads=info["n_threads"], max_steps=args.max_steps, max_tokens=args.max_tokens,
        wiki=(args.wiki or "multihop") if search is not None else None, settings=per,
    )
