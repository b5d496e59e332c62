"""`edgeagent bench serve`: the OpenAI server under 1 and N concurrent clients.

For each `--engines` kind the model is loaded once behind a real server
(uvicorn on a free loopback port, in this process) with `--parallel` = the
largest client count. For each client count C, C threads send non-streamed
agent requests (`/v1/chat/completions`, greedy, no wiki) over HTTP until the
question set (`--requests`, cycled over a fixed list of arithmetic questions
the agent answers with code) is done. Reported per kind and count:
`requests_per_min`, `p50_latency_s` and the answers; then
`throughput_Nx_vs_1` (goal ≥ 2 for 4 clients) and `same_answers` (how many
questions got the same answer under N clients as under 1; greedy decoding in a
different batch can change a token now and then). What the requests cost, from
their trajectories: `prompt_tokens_evaluated` (prefill: it does not get cheaper
with more clients), `completion_tokens` (decode: the part that shares batches)
and `from_fallback` (requests answered by the answer-from-memory call, which
evaluates the conversation again under its own system prompt), and
`request_seconds`: the requests' own generate / execute / fallback seconds
summed (they overlap under several clients; with one client they split the wall
time); for `batched`, `scheduler`: its seconds in `llama_decode` and waiting for
work, the batch rows of sampled tokens and prompt tokens it decoded, and its calls;
split between calls that carried prompt tokens and calls of sampled rows only, with
what a unit costs in each (`prompt_tokens_per_s`, `ms_per_row`).

`--repeat N` runs N rounds of every client count on the same server, alternating
their order. The ratio is then the median of the rounds' own ratios (each round's
counts ran minutes apart, so a shared machine's drift cancels); the full record is
the first round's, with every round's `requests_per_min_rounds` and
`throughput_vs_1_rounds`.

Not covered: streaming latency to first token, votes > 1, the wiki.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from typing import Any

QUESTIONS = [
    "What is 17 * 23?",
    "What is the sum of the integers from 1 to 100?",
    "What is 2 to the power of 12?",
    "How many seconds are there in 3 hours?",
    "What is 1234 + 4321?",
    "What is 144 divided by 12?",
    "What is 15 percent of 80?",
    "What is the remainder when 100 is divided by 7?",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", default="1,4", help="client counts, comma-separated (1,4)")
    parser.add_argument("--requests", type=int, default=8,
                        help="requests per client count (default 8)")
    parser.add_argument("--engines", default="batched",
                        help="engine kinds to measure: batched, shared, per-slot (comma list)")
    parser.add_argument("--max-steps", type=int, default=2, help="agent steps (default 2)")
    parser.add_argument("--max-tokens", type=int, default=96,
                        help="tokens per step (default 96)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every client count, alternating their order; the "
                             "ratio is the median of each round's own ratio (default 1)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """uvicorn serving `app` on a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                from edgeagent.errors import UserError

                raise UserError("the benchmark server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _clients(url: str, model: str, count: int, questions: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    todo = list(enumerate(questions))
    lock = threading.Lock()
    latencies: list[float] = []
    answers: dict[int, str | None] = {}
    errors: list[str] = []
    work = {"prompt_tokens_evaluated": 0, "completion_tokens": 0, "from_fallback": 0}
    seconds = {"generate_s": 0.0, "execute_s": 0.0, "fallback_s": 0.0}

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    if not todo:
                        return
                    i, q = todo.pop(0)
                body = {"model": model, "messages": [{"role": "user", "content": q}],
                        "temperature": 0, "max_tokens": args.max_tokens,
                        "max_steps": args.max_steps, "wiki": False, "seed": 0}
                t = time.perf_counter()
                r = http.post("/v1/chat/completions", json=body)
                took = time.perf_counter() - t
                with lock:
                    latencies.append(took)
                    if r.status_code == 200:
                        data = r.json()
                        answers[i] = data["choices"][0]["message"]["content"]
                        traj = data.get("edgeagent") or {}
                        tokens = traj.get("tokens") or {}
                        work["prompt_tokens_evaluated"] += int(tokens.get("prompt_evaluated", 0))
                        work["completion_tokens"] += int(tokens.get("completion", 0))
                        work["from_fallback"] += bool(traj.get("from_fallback"))
                        for key, value in (traj.get("timings") or {}).items():
                            if key in seconds:
                                seconds[key] += float(value)
                    else:
                        answers[i] = None
                        errors.append(f"{r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(count)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"clients": count, "requests": len(questions), "wall_s": round(wall, 2),
            "requests_per_min": round(len(questions) / wall * 60, 2),
            "p50_latency_s": round(statistics.median(latencies), 2),
            **work, "request_seconds": {k: round(v, 2) for k, v in seconds.items()},
            "errors": errors, "answers": [answers.get(i) for i in range(len(questions))]}


def _measure(host: Any, url: str, name: str, kind: str, count: int, questions: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    """One client count's run, with the batched scheduler's own account of it."""
    print(f"bench serve: {kind}, {count} client(s), {len(questions)} requests…",
          file=sys.stderr, flush=True)
    stats = getattr(host, "stats", None)  # batched only
    before = stats() if callable(stats) else None
    out = _clients(url, name, count, questions, args)
    if before is not None and callable(stats):  # where its time went
        after = stats()
        spent = {k: after[k] - before[k] for k in after}
        out["scheduler"] = {**{k: round(v, 2) for k, v in spent.items()},
                            **_unit_costs(spent)}
    return out


def _unit_costs(spent: dict[str, float]) -> dict[str, float]:
    """What a prompt token and a sampled row cost in this run: prompt tokens per second
    of the calls that carried them (rows riding along included), and milliseconds per
    row of the calls of sampled rows only. Under several clients, a row that shares a
    call with other clients' rows should cost less than under one."""
    out: dict[str, float] = {}
    if spent.get("prompt_calls_s", 0) > 0:
        out["prompt_tokens_per_s"] = round(spent["prefill_tokens"] / spent["prompt_calls_s"], 1)
    if spent.get("row_calls_rows", 0) > 0:
        out["ms_per_row"] = round(1000 * spent["row_calls_s"] / spent["row_calls_rows"], 2)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.errors import UserError
    from edgeagent.models.registry import model_label, resolve_model
    from edgeagent.serve.app import create_app
    from edgeagent.serve.jobs import AgentDefaults
    from edgeagent.serve.load import open_host
    from edgeagent.serve.service import ServeSettings, Service

    try:
        counts = sorted({int(c) for c in str(args.clients).split(",") if c.strip()})
    except ValueError:
        raise UserError(f"--clients wants numbers like 1,4, not {args.clients!r}") from None
    kinds = [k.strip() for k in str(args.engines).split(",") if k.strip()]
    if not counts or min(counts) < 1 or args.requests < 1 or args.repeat < 1:
        raise UserError("--clients, --requests and --repeat must be at least 1")
    for k in kinds:
        if k not in ("batched", "shared", "per-slot"):
            raise UserError(f"unknown engine kind {k!r} (batched, shared, per-slot)")
    path = resolve_model(getattr(args, "model", None))
    name = model_label(getattr(args, "model", None), path)
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
    parallel = max(counts)
    ratio: dict[str, float] = {}
    result: dict[str, Any] = {
        "model": name, "ratio": ratio,
        "baseline": f"{counts[0]} client(s) on the same server, same requests (requests/min)",
        "requests": args.requests, "max_steps": args.max_steps, "max_tokens": args.max_tokens}
    for kind in kinds:
        host = open_host(path, name=name, kind=kind, parallel=parallel,  # type: ignore[arg-type]
                         n_ctx=4096, threads=args.threads, max_votes=1)
        settings = ServeSettings(parallel=parallel, max_queue=parallel, wiki=None,
                                 defaults=AgentDefaults(max_steps=args.max_steps,
                                                        max_tokens=args.max_tokens))
        rounds: list[dict[str, Any]] = []
        try:
            with _Server(create_app(Service(host, settings))) as url:
                for n in range(args.repeat):
                    # alternate the order, so a drift in the machine's speed favours no count
                    order = counts if n % 2 == 0 else counts[::-1]
                    rounds.append({str(c): _measure(host, url, name, kind, c, questions, args)
                                   for c in order})
        finally:
            host.close()
        runs = rounds[0]
        base = str(counts[0])
        for c in counts[1:]:
            r = runs[str(c)]
            key = f"throughput_vs_{counts[0]}"
            per_round = [q[str(c)]["requests_per_min"] / q[base]["requests_per_min"]
                         for q in rounds]
            r[key] = round(statistics.median(per_round), 2)
            ratio[f"{kind}_{c}clients_vs_{counts[0]}"] = r[key]
            same = sum(a == b for a, b in zip(r["answers"], runs[base]["answers"], strict=True))
            r["same_answers"] = f"{same}/{len(questions)}"
            if len(rounds) > 1:
                r[f"{key}_rounds"] = [round(x, 2) for x in per_round]
        if len(rounds) > 1:
            for c in counts:
                runs[str(c)]["requests_per_min_rounds"] = [
                    q[str(c)]["requests_per_min"] for q in rounds]
        result[kind] = runs
    return result
