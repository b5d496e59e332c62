"""`edgeagent bench sag`: one agent step with 8 votes vs a greedy step.

A fixed 3-step task: the greedy pass runs the real agent step (`Agent._step`:
generate, parse, run in the sandbox) three times, going on after a final answer
so there are always 3 steps, and its turns become the script. The SAG passes
(8 candidates in ONE batched call, temperature 0.4, top-p 0.8, 8 sandbox forks,
vote, commit) — with the default straggler policy (`quorum`: the step ends once
half the candidates finished), the same with every candidate in its own batch
row (`unshared`: candidates whose tokens are still equal do not share a row),
and with the paper's wait-for-all (`wait`) — and
the sequential pass (wait-for-all, but 8 separate `generate` calls) then step
through the same 3 prompts. Each pass starts from an empty KV cache, so step 1
pays the system prompt's prefill in all of them. All passes run in one process
one after the other: compare the ratios, not seconds across runs.

Keys: `greedy_step_s`, `sag8_step_s`, `sag8_wait_step_s`, `sequential8_step_s`
(mean wall seconds per step), `sag8_vs_greedy` (target ≤ 2.5),
`sag8_wait_vs_greedy`, `sag8_unshared_vs_greedy`,
`sag8_rows_per_sample_token` (batch rows decoded over candidate tokens, per
step: below 1 where candidates shared rows), and per greedy step `prompt_tokens_evaluated_per_step`
(what the engine evaluated) vs `prompt_tokens_new_per_step` (tokens of the
prompt after its longest common prefix with the previous prompt followed by the
tokens the chosen output was generated as: what the model has never run, and
so what prefix reuse should limit evaluation to). `sag8_cut_per_step` counts
the candidates the policy cut. `web_search` answers from three fixed passages,
so no index is needed.

Not covered: answer quality; the HTTP engine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from edgeagent.bench.report import make_report
from edgeagent.engines.base import Completion, Message
from edgeagent.engines.kv_sequences import common_prefix

QUESTION = (
    "How many years passed between the founding of the city where the Eiffel Tower "
    "stands and the year the tower was completed?"
)
PASSAGES = [
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in "
     "Paris, France. It was constructed from 1887 to 1889 as the centrepiece of the 1889 "
     "World's Fair."),
    ("Paris", "Paris is the capital and largest city of France. The city was founded as the "
     "Gallic settlement of Lutetia around 250 BC by the Parisii tribe."),
    ("Lutetia", "Lutetia was a Gallo-Roman town, the forerunner of Paris, conquered by the "
     "Romans in 52 BC."),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--votes", type=int, default=8, help="candidates per SAG step (8)")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per action (256)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sequential", action="store_true",
                        help="skip the 8-separate-calls baseline (the slowest pass)")


def _search(query: str, k: int) -> list[Any]:
    from edgeagent.wiki.passages import Passage

    return [Passage(title=t, text=x, score=10.0 - i, doc_id=str(i))
            for i, (t, x) in enumerate(PASSAGES)][:k]


class _Sequential:
    """An engine whose `n > 1` is n separate one-sample calls (the baseline)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1,
                 seed: int | None = None, on_token: Any = None, **kw: Any) -> list[Completion]:
        out: list[Completion] = []
        for i in range(n):
            s = None if seed is None else seed + i
            out.extend(self.engine.generate(messages, n=1, seed=s, **kw))
        return out

    def close(self) -> None:
        pass


class _Recording:
    """Passes `generate` through and keeps the completions of the last call."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.supports_straggler = getattr(engine, "supports_straggler", False)
        self.last: list[Completion] = []
        self.rows: list[tuple[float, float]] = []  # (decoded rows, sample tokens) per call

    def generate(self, messages: Sequence[Message] | str, **kw: Any) -> list[Completion]:
        self.last = self.engine.generate(messages, **kw)
        prof = getattr(self.engine, "profile", None) or {}
        self.rows.append((prof.get("decoded_tokens", 0.0), prof.get("sample_tokens", 0.0)))
        return self.last

    def reset(self) -> None:
        self.engine.reset()

    def close(self) -> None:
        pass


def _pass(engine: Any, votes: int, args: argparse.Namespace,
          script: list[tuple[str, str]] | None, straggler: str = "quorum",
          outputs: list[list[int]] | None = None, rows: list[float] | None = None,
          ) -> tuple[list[float], list[Any], list[Any]]:
    """Three steps; with `script`, the chat follows it instead of the step's own choice.
    `outputs` collects the chosen output's generated tokens per step, `rows` the
    share of sample tokens that needed a batch row of their own."""
    from edgeagent.agent.loop import Agent, AgentConfig, _SearchLog
    from edgeagent.agent.parse import assistant_turn
    from edgeagent.agent.trajectory import Trajectory
    from edgeagent.tools import CodeSandbox

    cfg = AgentConfig(votes=votes, max_tokens=args.max_tokens, seed=args.seed,
                      straggler="quorum" if straggler == "quorum" else "wait")
    rec = _Recording(engine)
    agent = Agent(rec, search=_search, config=cfg)
    log = _SearchLog(_search, 3)
    traj = Trajectory(id="bench", question=QUESTION, model="", engine="", prompt_version="")
    traj.tokens = {"prompt": 0, "completion": 0, "prompt_evaluated": 0}
    messages = agent.initial_messages(QUESTION)
    times, steps, prompts = [], [], []
    reset = getattr(engine, "reset", None) or engine.engine.reset
    reset()
    with CodeSandbox(tools={"web_search": log}) as box:
        box.run("None")  # the worker is warm before timing, as in a session
        for k in range(1, 4):
            prompts.append(list(messages))
            t = time.perf_counter()
            step = agent._step(box, messages, k, None, traj, log)
            times.append(time.perf_counter() - t)
            assert step is not None
            if rows is not None and rec.rows:
                decoded, carried = rec.rows[0]
                rows.append(round(decoded / carried, 3) if carried else 1.0)
            rec.rows.clear()
            steps.append(step)
            if outputs is not None:
                outputs.append(list(rec.last[step.chosen or 0].tokens or []))
            text, obs = script[k - 1] if script else (step.text, step.observation)
            messages += [{"role": "assistant", "content": assistant_turn(text)},
                         {"role": "user", "content": obs}]
    return times, steps, prompts


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.engines.llamacpp import LlamaCppEngine
    from edgeagent.models.registry import resolve_model

    path = resolve_model(getattr(args, "model", None))
    with LlamaCppEngine(path, n_ctx=4096, n_threads=args.threads,
                        max_parallel=max(8, args.votes)) as engine:
        outputs: list[list[int]] = []
        greedy_t, greedy_steps, prompts = _pass(engine, 1, args, None, outputs=outputs)
        script = [(s.text, s.observation) for s in greedy_steps]
        rows: list[float] = []
        sag_t, sag_steps, _ = _pass(engine, args.votes, args, script, "quorum", rows=rows)
        engine.share_rows = False
        solo_t = _pass(engine, args.votes, args, script, "quorum")[0]
        engine.share_rows = True
        wait_t, wait_steps, _ = _pass(engine, args.votes, args, script, "wait")
        seq_t = [] if args.skip_sequential else _pass(
            _Sequential(engine), args.votes, args, script, "wait")[0]
        new_tokens = []
        seen: list[int] = []
        for k, p in enumerate(prompts):
            tokens = engine.tokenize(engine.render(p))
            new_tokens.append(len(tokens) - common_prefix(tokens, seen))
            seen = tokens + outputs[k]
        info = engine.info()
    greedy = sum(greedy_t) / 3
    sag = sum(sag_t) / 3
    wait = sum(wait_t) / 3
    solo = sum(solo_t) / 3
    seq = sum(seq_t) / 3 if seq_t else None

    def agree(steps: list[Any]) -> list[int]:
        return [max((len(v) for v in (s.votes or {}).values()), default=0) for s in steps]

    return make_report(
        "sag", model=info["name"],
        baseline="a greedy agent step on the same prompts in the same run",
        ratio={"sag8_vs_greedy": round(sag / greedy, 3),
               "sag8_wait_vs_greedy": round(wait / greedy, 3),
               "sag8_unshared_vs_greedy": round(solo / greedy, 3),
               **({} if seq is None else {"sequential8_vs_greedy": round(seq / greedy, 3)})},
        quant=info["quant"], threads=info["n_threads"],
        votes=args.votes, max_tokens=args.max_tokens,
        greedy_step_s=round(greedy, 4),
        sag8_step_s=round(sag, 4),
        sag8_wait_step_s=round(wait, 4),
        sequential8_step_s=None if seq is None else round(seq, 4),
        sag8_vs_greedy=round(sag / greedy, 3),
        sag8_wait_vs_greedy=round(wait / greedy, 3),
        sag8_unshared_step_s=round(solo, 4),
        sag8_unshared_vs_greedy=round(solo / greedy, 3),
        sag8_rows_per_sample_token=rows,
        sequential8_vs_greedy=None if seq is None else round(seq / greedy, 3),
        prompt_tokens_evaluated_per_step=[
            int(s.timings["prompt_tokens_evaluated"]) for s in greedy_steps],
        prompt_tokens_new_per_step=new_tokens,
        greedy_steps_s=[round(t, 3) for t in greedy_t],
        sag8_steps_s=[round(t, 3) for t in sag_t],
        sag8_wait_steps_s=[round(t, 3) for t in wait_t],
        sag8_unshared_steps_s=[round(t, 3) for t in solo_t],
        sequential8_steps_s=[round(t, 3) for t in seq_t],
        greedy_tokens_per_step=[int(s.timings.get("completion_tokens", 0))
                                for s in greedy_steps],
        sag8_tokens_per_step=[int(s.timings.get("completion_tokens", 0)) for s in sag_steps],
        sag8_wait_tokens_per_step=[int(s.timings.get("completion_tokens", 0))
                                   for s in wait_steps],
        sag8_cut_per_step=[sum(1 for c in s.candidates or [] if c.cut) for s in sag_steps],
        sag8_generate_s_per_step=[s.timings["generate_s"] for s in sag_steps],
        greedy_generate_s_per_step=[s.timings["generate_s"] for s in greedy_steps],
        sag8_agree=agree(sag_steps), sag8_wait_agree=agree(wait_steps),
    )
