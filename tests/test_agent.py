"""The agent loop with a scripted fake engine and the real sandbox: steps,
retries, the fallback, voting, events, trajectories. Fast: no model."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from edgeagent.agent import events as ev
from edgeagent.agent.loop import Agent, AgentConfig
from edgeagent.agent.parse import STOP_SEQUENCES
from edgeagent.agent.trajectory import Trajectory
from edgeagent.engines.base import Completion, Message, Timings
from edgeagent.wiki.passages import Passage


def act(thought: str, code: str) -> str:
    return f"Thought: {thought}\nCode:\n```py\n{code}\n```"


class ScriptedEngine:
    """Returns scripted outputs: one list of candidate texts per call."""

    name = "scripted"

    def __init__(self, script: Sequence[Sequence[str] | str]) -> None:
        self.script = [[s] if isinstance(s, str) else list(s) for s in script]
        self.calls: list[dict[str, Any]] = []

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1, temperature: float = 0.0,
                 top_p: float = 1.0, max_tokens: int = 512, stop: Sequence[str] = (),
                 seed: int | None = None, prefix: str | None = None,
                 on_token: Callable[[int, str], None] | None = None) -> list[Completion]:
        self.calls.append(dict(messages=list(messages), n=n, temperature=temperature,
                               top_p=top_p, stop=list(stop), prefix=prefix))
        if not self.script:
            raise AssertionError("the engine was called more often than scripted")
        texts = self.script.pop(0)
        assert len(texts) == n, f"scripted {len(texts)} candidates, asked for {n}"
        out = []
        for i, t in enumerate(texts):
            if on_token is not None:
                on_token(i, t)
            out.append(Completion(t, "stop", 10, 5, Timings(prompt_tokens_evaluated=10)))
        return out

    def close(self) -> None:
        pass


def fake_search(query: str, k: int) -> list[Passage]:
    return [Passage(title="Paris", text="Paris is the capital of France.", score=12.0,
                    doc_id="p1")][:k]


def run(script: Sequence[Sequence[str] | str], question: str = "What is the capital of France?",
        **config: Any) -> tuple[Trajectory, ScriptedEngine, list[ev.Event]]:
    engine = ScriptedEngine(script)
    events: list[ev.Event] = []
    agent = Agent(engine, search=fake_search, config=AgentConfig(**config),
                  on_event=events.append)
    return agent.run(question), engine, events


def test_search_then_answer_in_several_steps() -> None:
    traj, engine, events = run([
        act("Search.", 'r = web_search("capital of France")\nprint(r)'),
        act("Compute.", "n = len('Paris')\nprint(n)"),
        act("Answer.", 'final_answer("Paris")'),
    ])
    assert traj.answer == "Paris" and not traj.from_fallback
    assert [s.final for s in traj.steps] == [False, False, True]
    assert "===== Document 0, similarity: 0.55 =====\n\"Paris\"" in traj.steps[0].observation
    assert traj.steps[1].observation == (
        "Call id: call_2\nObservation:\nExecution logs:\n5\nLast output from code snippet:\nNone")
    # greedy, the paper's stop sequences, and each prompt extends the previous one
    assert all(c["temperature"] == 0.0 and c["n"] == 1 for c in engine.calls)
    assert engine.calls[0]["stop"] == list(STOP_SEQUENCES)
    m1, m2, m3 = (c["messages"] for c in engine.calls)
    assert m2[: len(m1)] == m1 and m3[: len(m2)] == m2
    assert m2[2] == {"role": "assistant", "content": act("Search.", 'r = web_search("capital of '
                                                          'France")\nprint(r)') + "<end_code>"}
    # the training chat: system, task, 3 actions, 2 observations (not the last one)
    roles = [m["role"] for m in traj.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert traj.messages[1]["content"].startswith("New task:\nWhat is the capital of France?")
    assert all(m["content"].endswith("```<end_code>") for m in traj.messages
               if m["role"] == "assistant")
    obs = [e for e in events if isinstance(e, ev.Observation)]
    assert obs[0].passages and obs[0].passages[0]["title"] == "Paris"


def test_state_persists_between_steps() -> None:
    traj, _, _ = run([act("a", "x = 20"), act("b", "final_answer(x + 1)")])
    assert traj.answer == "21"


def test_parse_error_then_retry() -> None:
    traj, engine, _ = run([
        "Thought: I know it. The answer is Paris, no code needed.",
        act("Now with code.", 'final_answer("Paris")'),
    ])
    assert traj.answer == "Paris"
    first = traj.steps[0]
    assert first.code is None and first.error and "Error in code parsing" in first.error
    assert first.observation.startswith("Error:\nError in code parsing:")
    assert first.observation.endswith("try a completely different approach.\n")
    assert engine.calls[1]["messages"][-1]["content"] == first.observation


def test_the_fallback_call_counts_as_generation_time() -> None:
    import time

    class SlowFallback(ScriptedEngine):
        def generate(self, messages: Sequence[Message] | str, **kw: Any) -> list[Completion]:
            if not isinstance(messages, str) and messages[0]["content"].startswith("An agent"):
                time.sleep(0.05)  # the answer-from-memory call
            return super().generate(messages, **kw)

    engine = SlowFallback([act("a", "print(1)"), "Paris"])
    traj = Agent(engine, search=fake_search, config=AgentConfig(max_steps=1)).run("q?")
    assert traj.from_fallback and traj.timings["fallback_s"] >= 0.05
    assert traj.timings["generate_s"] >= traj.timings["fallback_s"]  # not lost in "other"
    assert traj.timings["total_s"] >= traj.timings["generate_s"]


def test_execution_error_keeps_printed_output_then_retry() -> None:
    traj, _, _ = run([act("Oops.", "print('half')\n1/0"), act("Fix.", "final_answer(2)")])
    obs = traj.steps[0].observation
    assert obs.startswith("Call id: call_1\nObservation:\nExecution logs:\nhalf\n")
    assert "Call id: call_1\nError:\n" in obs and "ZeroDivisionError" in obs
    assert traj.answer == "2"


def test_max_steps_then_fallback_from_memory() -> None:
    traj, engine, events = run(
        [act("a", "print(1)"), act("b", "print(2)"), "  Paris  "], max_steps=2)
    assert traj.answer == "Paris" and traj.from_fallback
    chat = engine.calls[-1]["messages"]
    assert chat[0]["role"] == "system" and chat[0]["content"].startswith(
        "An agent tried to answer a user query but it got stuck")
    assert chat[1]["content"].startswith("New task:\n")
    # the last observation and the request are one user turn, as in the reference
    assert chat[-1]["role"] == "user"
    assert chat[-1]["content"].endswith("Based on the above, please provide an answer to the "
                                        "following user task:\nWhat is the capital of France?")
    assert "Call id: call_2" in chat[-1]["content"]
    starts = [e for e in events if isinstance(e, ev.StepStart)]
    assert [(s.step, s.fallback) for s in starts] == [(1, False), (2, False), (3, True)]
    final = [e for e in events if isinstance(e, ev.FinalAnswer)]
    assert final == [ev.FinalAnswer("Paris", 3, from_fallback=True)]


@pytest.mark.parametrize("text, answer", [
    ("Thought: t\nCode:\n```python\nfinal_answer(3)\n```", "3"),
    ("Thought: t\nCode:\n```\nfinal_answer(3)\n```", "3"),
    ("Thought: t\nCode:\n```py\nfinal_answer(3)\n", "3"),  # unclosed fence
    ("Thought: t\nCode:\n```py\nx = 1\n```\nthen\n```py\nfinal_answer(x + 2)\n```", "3"),
    ("Thought: t\nCode:\n```py\nfinal_answer(3)\n```\nI am sure it is three.", "3"),
    ("Thought: t\nCode:\n```py\nfinal_answer(3)\nprint('never')\nfinal_answer(4)\n```", "3"),
    ("Code:\n```py\nfinal_answer(3)\n```", "3"),  # no Thought
    ("final_answer(3)", "3"),  # a bare snippet
])
def test_robust_parsing_works(text: str, answer: str) -> None:
    traj, _, _ = run([text])
    assert traj.answer == answer and len(traj.steps) == 1


@pytest.mark.parametrize("text", [
    "", "Thought: only thinking", "Thought: t\nCode:\n```py\nfinal_answer(\n```",
    "Thought: t\nCode:\n```py\ndef f(:\n", "Observation: nothing",
])
def test_bad_output_is_an_error_turn_not_a_crash(text: str) -> None:
    traj, _, _ = run([text, act("ok", "final_answer(1)")])
    assert traj.steps[0].error and traj.answer == "1"


def test_first_thought_prefix_is_part_of_the_turn() -> None:
    engine = ScriptedEngine([' I will answer.\nCode:\n```py\nfinal_answer("x")\n```'])
    traj = Agent(engine).run("q", prefix="Thought:")
    assert engine.calls[0]["prefix"] == "Thought:"
    assert traj.ftp_prefix == "Thought:" and traj.answer == "x"
    assert traj.messages[-1]["content"].startswith("Thought: I will answer.")


# -- voting ------------------------------------------------------------------


def test_final_answer_only_candidates_vote_by_value() -> None:
    cands = [act("a", f"final_answer({v})") for v in (3, 4, 4, 5, 4, 3, 3, 4)]
    traj, engine, events = run([cands], votes=8)
    assert engine.calls[0]["n"] == 8 and len(engine.calls) == 1  # ONE batched call
    assert engine.calls[0]["temperature"] == 0.4 and engine.calls[0]["top_p"] == 0.8
    assert traj.answer == "4"
    step = traj.steps[0]
    assert step.chosen == 1 and step.votes is not None and len(step.votes) == 3
    assert sorted(len(v) for v in step.votes.values()) == [1, 3, 4]
    vote = next(e for e in events if isinstance(e, ev.Vote))
    assert (vote.chosen, vote.agree, vote.total) == (1, 4, 8)


def test_tie_goes_to_the_earliest_group() -> None:
    cands = [act("a", "print(1)"), act("b", "print(2)"), act("c", "print(2)"),
             act("d", "print(1)")]
    traj, _, _ = run([cands, [act("e", "final_answer(0)")] * 4], votes=4)
    assert traj.steps[0].chosen == 0


def test_rejected_candidates_leave_no_trace_and_the_chosen_is_not_rerun() -> None:
    calls: list[str] = []

    def tick(arg: str) -> str:
        calls.append(arg)
        return arg

    cands = [
        act("a", "loser_a = 1\nprint('A')\ntick('a')"),
        act("b", "won = 7\nprint('B')\ntick('b')"),
        act("c", "won = 7\nprint('B')\ntick('c')"),
    ]
    check = act("check", "try:\n    loser_a\n    print('leak')\nexcept NameError:\n"
                "    print('clean')\nfinal_answer(won)")
    engine = ScriptedEngine([cands, [check] * 3])
    agent = Agent(engine, config=AgentConfig(votes=3),
                  sandbox_factory=lambda tools: _sandbox({"tick": tick}))
    traj = agent.run("q")
    assert traj.steps[0].chosen == 1
    assert traj.answer == "7"
    # each candidate ran exactly once: committing did not run the chosen one again
    assert sorted(calls) == ["a", "b", "c"]
    assert "A" not in traj.steps[0].observation and "B" in traj.steps[0].observation
    assert '"printed": "clean"' in traj.steps[1].candidates[0].key  # type: ignore[index]


def _sandbox(tools: dict[str, Callable[[str], str]]) -> Any:
    from edgeagent.tools import CodeSandbox

    return CodeSandbox(tools=tools)


def test_all_failed_keeps_the_first_with_its_error() -> None:
    cands = ["no code here", act("b", "1/0"), act("c", "undefined_name")]
    traj, _, events = run([cands, [act("ok", "final_answer(1)")] * 3], votes=3)
    step = traj.steps[0]
    assert step.chosen == 0 and step.error and "Error in code parsing" in step.error
    assert step.votes == {} and [c.ok for c in step.candidates or []] == [False] * 3
    vote = next(e for e in events if isinstance(e, ev.Vote))
    assert vote.chosen == 0 and vote.agree == 0
    assert traj.answer == "1"


def test_failed_candidates_do_not_vote() -> None:
    cands = [act("a", "1/0"), act("b", "final_answer(2)"), act("c", "1/0")]
    traj, _, _ = run([cands], votes=3)
    assert traj.answer == "2" and traj.steps[0].chosen == 1


# -- events ------------------------------------------------------------------


def test_event_order_with_voting() -> None:
    cands = [act("a", "print(1)"), act("b", "print(1)")]
    _, _, events = run([cands, [act("c", "final_answer(1)")] * 2], votes=2)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "RunStart",
        "StepStart", "Token", "Token", "Candidate", "Candidate", "Vote", "Observation",
        "StepStart", "Token", "Token", "Candidate", "Candidate", "Vote", "Observation",
        "FinalAnswer",
    ]
    json.dumps([asdict(e) for e in events])  # events are JSON-able  # type: ignore[call-overload]


def test_cancel_before_a_step_returns_a_cancelled_trajectory() -> None:
    engine = ScriptedEngine([act("a", "print(1)")])
    events: list[ev.Event] = []
    agent = Agent(engine, on_event=events.append)

    def on_event(e: ev.Event) -> None:
        events.append(e)
        if isinstance(e, ev.Observation):
            agent.cancel()

    agent.on_event = on_event
    traj = agent.run("q")
    assert traj.cancelled and traj.answer is None
    assert isinstance(events[-1], ev.Cancelled)


def test_engine_failure_is_an_agent_error_then_fallback() -> None:
    from edgeagent.errors import UserError

    class Broken(ScriptedEngine):
        def generate(self, messages: Any, **kw: Any) -> list[Completion]:
            if kw.get("stop"):
                raise UserError("the prompt is 9999 tokens but the context holds 2048")
            return super().generate(messages, **kw)

    events: list[ev.Event] = []
    traj = Agent(Broken(["fallback answer"]), on_event=events.append).run("q")
    assert traj.error and "context" in traj.error
    assert traj.answer == "fallback answer" and traj.from_fallback
    assert any(isinstance(e, ev.AgentError) for e in events)


def test_trajectory_round_trip_and_file(tmp_path: Path) -> None:
    from edgeagent.agent.trajectory import append_record, done_ids, read_records

    traj, _, _ = run([[act("a", "print(1)"), act("b", "final_answer(2)")],
                      [act("c", "final_answer(2)")] * 2], votes=2)
    d = traj.to_dict()
    for key in ("id", "question", "model", "engine", "prompt_version", "steps", "answer",
                "tokens", "timings", "messages"):
        assert key in d
    assert set(d["steps"][0]["candidates"][0]) >= {"text", "key", "ok"}
    assert Trajectory.from_dict(json.loads(traj.to_json())).to_dict() == d
    path = tmp_path / "t.jsonl"
    append_record(path, traj)
    with open(path, "ab") as fh:  # a record torn by a kill
        fh.write(b'{"id": "half')
    assert [r.id for r in read_records(path)] == [traj.id]
    append_record(path, traj)  # resuming cuts the torn line first
    assert path.read_text().count("\n") == 2 and done_ids(path) == {traj.id}
