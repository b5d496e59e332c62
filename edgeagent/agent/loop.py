"""The agent loop: Thought / Code / Observation steps with self-consistent voting.

    agent = Agent(engine, search=index.search, config=AgentConfig(votes=8))
    traj = agent.run("Who wrote Hamlet?")      # a `Trajectory`; events on the way

Per step the loop renders the chat (system, task, then for each earlier step
the chosen assistant turn and its observation), so each prompt extends the
last one and a KV-caching engine evaluates only the new tokens. It samples one
action (`votes == 1`, greedy by default) or N candidates in ONE batched
`generate` call (`votes > 1`, temperature 0.4 / top-p 0.8 by default), parses
each (`parse`), runs each in its own fork of the sandbox state
(`run_candidates`), votes (`vote`), and commits the chosen fork without running
it again. With `straggler="quorum"` (the default) the batch ends once half the
candidates have finished their action (or one that is still going has run far
longer than those that finished): the rest are recorded as `cut` and not run.
`straggler="wait"` waits for every candidate, as the paper does. A KV-caching
engine keeps the fixed start of the agent prompt (and of the fallback prompt)
across questions (`keep_prefix`), so a new question evaluates only its own
tokens. `final_answer(x)` ends the run; after `max_steps` one fallback call
asks for the answer from the agent's memory. Malformed output and failing code
become error turns for the next step; the loop itself raises only for
KeyboardInterrupt (after emitting `Cancelled`).

Consumers subscribe through `on_event` (`events`); the loop knows no screen.
Not covered: the model (engines), the interpreter (tools.sandbox), the index.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from edgeagent.agent import events as ev
from edgeagent.agent.parse import STOP_SEQUENCES, ParsedAction, assistant_turn, parse_action
from edgeagent.agent.prompts import PromptKind, Prompts, load_prompts
from edgeagent.agent.trajectory import CandidateRecord, StepRecord, Trajectory
from edgeagent.agent.vote import choose, vote_key
from edgeagent.engines.base import Completion, Engine, Message, StragglerPolicy
from edgeagent.errors import UserError

if TYPE_CHECKING:
    from edgeagent.tools.sandbox.host import CodeSandbox
    from edgeagent.tools.sandbox.result import ExecResult
    from edgeagent.wiki.passages import Passage

CUT_ERROR = "cut short: the vote was decided before this candidate finished"
SearchFn = Callable[[str, int], "list[Passage]"]
SandboxFactory = Callable[[dict[str, Callable[[str], str]]], "CodeSandbox"]


@dataclass
class AgentConfig:
    """How the loop samples and how long it may go on.

    `temperature` / `top_p` None mean: greedy (0.0 / 1.0) with one vote, the
    paper's 0.4 / 0.8 with several."""

    votes: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_steps: int = 5
    max_tokens: int = 512
    seed: int | None = None
    prompt: PromptKind = "student"
    search_k: int = 3
    code_timeout_s: float = 10.0
    fallback: bool = True
    straggler: Literal["wait", "quorum"] = "quorum"
    quorum: int | None = None  # candidates that must finish; None: half of `votes`, rounded up
    length_bound: float | None = 2.0  # cut a candidate this many times longer than the finished

    def straggler_policy(self) -> StragglerPolicy | None:
        """The engine-side policy for a voting step (None: wait for every candidate)."""
        if self.straggler == "wait" or self.votes < 2:
            return None
        quorum = self.quorum if self.quorum is not None else (self.votes + 1) // 2
        return StragglerPolicy(quorum=max(1, min(quorum, self.votes)),
                               length_bound=self.length_bound)

    def sampling(self) -> tuple[float, float]:
        voting = self.votes > 1
        t = self.temperature if self.temperature is not None else (0.4 if voting else 0.0)
        p = self.top_p if self.top_p is not None else (0.8 if voting else 1.0)
        return t, p


def _default_sandbox(
    tools: dict[str, Callable[[str], str]], *, timeout_s: float = 10.0
) -> CodeSandbox:
    from edgeagent.tools.sandbox.host import CodeSandbox

    return CodeSandbox(tools=tools, timeout_s=timeout_s)


def _answer_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class _SearchLog:
    """The `web_search` tool handed to the sandbox; remembers what each query returned."""

    def __init__(self, search: SearchFn | None, k: int) -> None:
        self.search = search
        self.k = k
        self.hits: list[tuple[str, list[Passage]]] = []

    def __call__(self, query: str) -> str:
        from edgeagent.wiki.tool import format_web_search

        assert self.search is not None
        passages = self.search(str(query), self.k)
        self.hits.append((str(query), passages))
        return format_web_search(passages)

    def take(self, code: str | None, single: bool) -> list[dict[str, Any]]:
        """Passages of this step's queries (all of them with one vote; with several,
        those whose query text appears in the chosen code)."""
        out = [
            {"query": q, "title": p.title, "text": p.text, "score": p.score, "doc_id": p.doc_id}
            for q, ps in self.hits
            if single or (code is not None and q in code)
            for p in ps
        ]
        self.hits = []
        return out


class Agent:
    """One model, its tools and a sampling config; `run(question)` per task."""

    def __init__(
        self,
        engine: Engine,
        *,
        search: SearchFn | None = None,
        config: AgentConfig | None = None,
        on_event: ev.EventHandler | None = None,
        prompts: Prompts | None = None,
        sandbox_factory: SandboxFactory | None = None,
        model_name: str | None = None,
    ) -> None:
        self.engine = engine
        self.search = search
        self.config = config or AgentConfig()
        if self.config.votes < 1:
            raise UserError("votes must be at least 1")
        if self.config.max_steps < 1:
            raise UserError("max steps must be at least 1")
        if self.config.straggler not in ("wait", "quorum"):
            raise UserError(f"unknown straggler policy {self.config.straggler!r} "
                            "(wait or quorum)")
        self.on_event = on_event
        self.prompts = prompts or load_prompts()
        self.sandbox_factory = sandbox_factory or functools.partial(
            _default_sandbox, timeout_s=self.config.code_timeout_s
        )
        self.model_name = model_name or str(getattr(engine, "name", "model"))
        self._cancel = threading.Event()

    # -- public --------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running `run` soon (thread-safe); it returns a cancelled trajectory."""
        self._cancel.set()
        stop = getattr(self.engine, "cancel", None)
        if callable(stop):
            stop()

    def initial_messages(self, question: str) -> list[Message]:
        return [
            {"role": "system", "content": self.prompts.system(self.config.prompt)},
            {"role": "user", "content": self.prompts.task(question)},
        ]

    def run(
        self,
        question: str,
        *,
        task_id: str | None = None,
        gold: Any = None,
        dataset: str | None = None,
        prefix: str | None = None,
    ) -> Trajectory:
        """Solve one task; never raises for model or code misbehaviour."""
        self._cancel.clear()
        cfg = self.config
        index = getattr(self.search, "__self__", None)
        traj = Trajectory(
            id=task_id or uuid.uuid4().hex[:12], question=question, model=self.model_name,
            engine=type(self.engine).__name__, prompt_version=self.prompts.version,
            gold=gold, dataset=dataset, ftp_prefix=prefix,
            # how observations were retrieved: the index's profile (WikiIndex.search's owner)
            retrieval=getattr(index, "retrieval", None),
            retrieval_settings=getattr(index, "retrieval_settings", None),
            straggler=cfg.straggler if cfg.votes > 1 else None,
        )
        traj.tokens = {"prompt": 0, "completion": 0, "prompt_evaluated": 0}
        self._emit(ev.RunStart(question, self.model_name, cfg.votes, cfg.max_steps))
        messages = self.initial_messages(question)
        traj.tokens["prompt_evaluated"] += self._keep_prefix(messages, question)
        log = _SearchLog(self.search, cfg.search_k)
        tools: dict[str, Callable[[str], str]] = {"web_search": log} if self.search else {}
        started = time.perf_counter()
        step_no = 0
        try:
            with self.sandbox_factory(tools) as box:
                for step_no in range(1, cfg.max_steps + 1):
                    if self._cancel.is_set():
                        return self._cancelled(traj, messages, step_no, started)
                    self._emit(ev.StepStart(step_no))
                    try:
                        step = self._step(box, messages, step_no, prefix if step_no == 1 else None,
                                          traj, log)
                    except UserError as exc:  # the engine failed (context full, server down)
                        traj.error = str(exc)
                        self._emit(ev.AgentError(str(exc), step_no))
                        break
                    if step is None:
                        return self._cancelled(traj, messages, step_no, started)
                    traj.steps.append(step)
                    messages.append({"role": "assistant", "content": assistant_turn(step.text)})
                    messages.append({"role": "user", "content": step.observation})
                    if step.final:
                        traj.answer = _answer_text(step.final_answer)
                        self._emit(ev.FinalAnswer(traj.answer, step_no))
                        break
            if traj.answer is None and cfg.fallback and not self._cancel.is_set():
                self._fallback(traj, messages, step_no + 1 if traj.error is None else step_no)
        except KeyboardInterrupt:
            self._emit(ev.Cancelled(step_no or None))
            raise
        if self._cancel.is_set() and traj.answer is None:
            return self._cancelled(traj, messages, step_no, started)
        return self._finish(traj, messages, started)

    def _keep_prefix(self, messages: Sequence[Message], question: str) -> int:
        """Pin the question-independent start of `messages` in a KV-caching engine;
        returns the tokens that cost (0 once kept)."""
        keep = getattr(self.engine, "keep_prefix", None)
        if not callable(keep) or not question.strip():
            return 0
        try:
            return int(keep(messages, before=question))
        except UserError:  # too long for the context: every step evaluates it instead
            return 0

    # -- one step ------------------------------------------------------------

    def _generate(self, messages: Sequence[Message], step_no: int, n: int,
                  prefix: str | None) -> list[Completion]:
        cfg = self.config
        temperature, top_p = cfg.sampling()
        seed = None if cfg.seed is None else cfg.seed + 1000 * step_no

        def on_token(i: int, piece: str) -> None:
            self._emit(ev.Token(step_no, i, piece))

        if prefix:
            for i in range(n):
                on_token(i, prefix)
        extra: dict[str, Any] = {}
        policy = cfg.straggler_policy() if n > 1 else None
        if policy is not None and getattr(self.engine, "supports_straggler", False):
            extra["straggler"] = policy
        return self.engine.generate(
            messages, n=n, temperature=temperature, top_p=top_p, max_tokens=cfg.max_tokens,
            stop=list(STOP_SEQUENCES), seed=seed, prefix=prefix, on_token=on_token, **extra,
        )

    def _step(self, box: CodeSandbox, messages: list[Message], step_no: int,
              prefix: str | None, traj: Trajectory, log: _SearchLog) -> StepRecord | None:
        from edgeagent.tools.sandbox.result import ExecResult

        n = self.config.votes
        t0 = time.perf_counter()
        comps = self._generate(messages, step_no, n, prefix)
        t1 = time.perf_counter()
        for c in comps:
            traj.tokens["completion"] += c.completion_tokens
        traj.tokens["prompt"] += comps[0].prompt_tokens
        traj.tokens["prompt_evaluated"] += sum(c.timings.prompt_tokens_evaluated for c in comps)
        if self._cancel.is_set() or any(c.finish_reason == "cancelled" for c in comps):
            return None
        texts = [(prefix or "") + c.text for c in comps]
        cut = [c.finish_reason == "cut" for c in comps]
        parsed = [ParsedAction(thought="", code=None, error=CUT_ERROR) if was_cut
                  else parse_action(t) for t, was_cut in zip(texts, cut, strict=True)]
        runnable = [i for i, p in enumerate(parsed) if p.code is not None]
        results: list[ExecResult] = [ExecResult(error=p.error) for p in parsed]
        if n == 1:
            if runnable:
                results[0] = box.run(parsed[0].code or "")
            chosen = 0
            record_candidates = False
            ballot = None
        else:
            ran = box.run_candidates([parsed[i].code or "" for i in runnable]) if runnable else []
            for i, r in zip(runnable, ran, strict=True):
                results[i] = r
            keys = [vote_key(r.stdout, r.is_final, r.final_answer) if p.code is not None else ""
                    for p, r in zip(parsed, results, strict=True)]
            oks = [p.code is not None and r.ok for p, r in zip(parsed, results, strict=True)]
            for i, (p, r) in enumerate(zip(parsed, results, strict=True)):
                self._emit(ev.Candidate(
                    step=step_no, index=i, thought=p.thought, code=p.code, key=keys[i],
                    ok=oks[i], observation=r.observation() if r.ok else "", error=r.error,
                    final_answer=r.final_answer if r.is_final else None, cut=cut[i],
                ))
            ballot = choose(keys, oks)
            # none ok: keep the first that finished (a cut one has no error to learn from)
            first_done = next((i for i, was_cut in enumerate(cut) if not was_cut), 0)
            chosen = ballot.chosen if ballot.chosen is not None else first_done
            if chosen in runnable:
                box.commit(runnable.index(chosen))  # the fork becomes the state; no re-run
            elif runnable:
                box.discard()
            self._emit(ev.Vote(step_no, chosen, ballot.agree, n, dict(ballot.groups)))
            record_candidates = True
        t2 = time.perf_counter()
        action, result = parsed[chosen], results[chosen]
        observation = self._observation(action, result, step_no)
        final = action.code is not None and result.ok and result.is_final
        step = StepRecord(
            thought=action.thought, code=action.code, observation=observation,
            error=result.error, final=final, final_answer=result.final_answer if final else None,
            text=texts[chosen], chosen=chosen if record_candidates else None,
            timings={"generate_s": round(t1 - t0, 4), "execute_s": round(t2 - t1, 4),
                     "prompt_tokens_evaluated": comps[0].timings.prompt_tokens_evaluated,
                     "completion_tokens": sum(c.completion_tokens for c in comps)},
        )
        if record_candidates and ballot is not None:
            step.candidates = [
                CandidateRecord(text=t, key=k, ok=o, error=r.error, cut=c)
                for t, k, o, r, c in zip(texts, keys, oks, results, cut, strict=True)
            ]
            step.votes = dict(ballot.groups)
        self._emit(ev.Observation(step_no, action.thought, action.code, observation,
                                  result.error, log.take(action.code, n == 1)))
        return step

    @staticmethod
    def _observation(action: ParsedAction, result: ExecResult, step_no: int) -> str:
        from edgeagent.tools.sandbox.result import RETRY_HINT, format_observation, render_turns

        if action.code is None:
            # the reference records a parse error without a call id (no tool was called)
            return f"Error:\n{result.error}\n{RETRY_HINT}"
        if result.ok:
            return format_observation(result, step_no)
        return "".join(render_turns(result, step_no))

    # -- the end -------------------------------------------------------------

    def _fallback(self, traj: Trajectory, messages: list[Message], step_no: int) -> None:
        self._emit(ev.StepStart(step_no, fallback=True))
        chat = self.prompts.fallback_messages(messages[1:], traj.question)
        t0 = time.perf_counter()
        traj.tokens["prompt_evaluated"] += self._keep_prefix(chat, traj.question)
        try:
            comp = self.engine.generate(
                chat, n=1, temperature=0.0, max_tokens=self.config.max_tokens,
                seed=self.config.seed,
                on_token=lambda i, piece: self._emit(ev.Token(step_no, i, piece)),
            )[0]
        except UserError as exc:
            traj.error = str(exc)
            self._emit(ev.AgentError(str(exc), step_no))
            return
        finally:
            traj.timings["fallback_s"] = round(time.perf_counter() - t0, 4)
        traj.tokens["prompt"] += comp.prompt_tokens
        traj.tokens["completion"] += comp.completion_tokens
        traj.tokens["prompt_evaluated"] += comp.timings.prompt_tokens_evaluated
        if comp.finish_reason == "cancelled":
            return
        traj.answer = comp.text.strip()
        traj.from_fallback = True
        self._emit(ev.FinalAnswer(traj.answer, step_no, from_fallback=True))

    def _finish(self, traj: Trajectory, messages: list[Message], started: float) -> Trajectory:
        chat = list(messages)
        if chat and chat[-1]["role"] == "user" and len(chat) > 2:
            chat.pop()  # the observation after the last action is not trained on
        traj.messages = chat
        steps = traj.steps
        fallback = float(traj.timings.get("fallback_s", 0.0))  # the answer-from-memory call
        traj.timings = {
            "total_s": round(time.perf_counter() - started, 4),
            "generate_s": round(sum(s.timings.get("generate_s", 0.0) for s in steps)
                                + fallback, 4),
            "execute_s": round(sum(s.timings.get("execute_s", 0.0) for s in steps), 4),
        }
        if fallback:
            traj.timings["fallback_s"] = fallback
        return traj

    def _cancelled(self, traj: Trajectory, messages: list[Message], step_no: int,
                   started: float) -> Trajectory:
        traj.cancelled = True
        self._emit(ev.Cancelled(step_no))
        return self._finish(traj, messages, started)

    def _emit(self, event: ev.Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
