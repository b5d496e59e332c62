"""The agent loop's straggler policy and fixed-prefix pinning, with a scripted engine
that reports some candidates as cut. Fast: no model (the real sandbox runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from edgeagent.agent import events as ev
from edgeagent.agent.loop import CUT_ERROR, Agent, AgentConfig
from edgeagent.agent.trajectory import Trajectory
from edgeagent.engines.base import Completion, Message, StragglerPolicy, Timings
from edgeagent.errors import UserError


def act(code: str) -> str:
    return f"Thought: go.\nCode:\n```py\n{code}\n```"


class CuttingEngine:
    """Scripted candidates; `None` in a script row is a candidate the policy cut."""

    name = "cutting"
    supports_straggler = True

    def __init__(self, script: list[list[str | None]]) -> None:
        self.script = script
        self.kwargs: list[dict[str, Any]] = []
        self.kept: list[tuple[Any, str | None]] = []

    def keep_prefix(self, prompt: Sequence[Message] | str, *, before: str | None = None) -> int:
        self.kept.append((prompt, before))
        return 7 if len(self.kept) == 1 else 0

    def generate(self, messages: Sequence[Message] | str, **kw: Any) -> list[Completion]:
        self.kwargs.append(kw)
        row = self.script.pop(0)
        assert len(row) == kw["n"]
        return [Completion(t or "Thought: still going, the code is not wri", "cut" if t is None
                           else "stop", 10, 5, Timings(prompt_tokens_evaluated=10))
                for t in row]

    def close(self) -> None:
        pass


def _run(script: list[list[str | None]], **config: Any) -> tuple[Trajectory, CuttingEngine,
                                                                    list[ev.Event]]:
    engine = CuttingEngine(script)
    events: list[ev.Event] = []
    traj = Agent(engine, config=AgentConfig(**config), on_event=events.append).run("q?")
    return traj, engine, events


def test_policy_defaults_and_the_papers_wait() -> None:
    assert AgentConfig(votes=8).straggler_policy() == StragglerPolicy(quorum=4,
                                                                      length_bound=2.0)
    assert AgentConfig(votes=5, quorum=9).straggler_policy() == StragglerPolicy(
        quorum=5, length_bound=2.0)
    assert AgentConfig(votes=8, straggler="wait").straggler_policy() is None
    assert AgentConfig(votes=1).straggler_policy() is None
    with pytest.raises(UserError, match="unknown straggler policy"):
        Agent(CuttingEngine([]), config=AgentConfig(straggler="fast"))  # type: ignore[arg-type]


def test_cut_candidates_are_recorded_not_run_and_do_not_vote() -> None:
    script: list[list[str | None]] = [
        [None, act('print("A")'), None, act('print("B")'), act('print("B")'), None],
        [act("final_answer(3)")] * 6,
    ]
    traj, engine, events = _run(script, votes=6)
    assert engine.kwargs[0]["straggler"] == StragglerPolicy(quorum=3, length_bound=2.0)
    step = traj.steps[0]
    assert step.candidates is not None
    assert [c.cut for c in step.candidates] == [True, False, True, False, False, True]
    assert all(not c.ok and c.error == CUT_ERROR for c in step.candidates if c.cut)
    assert step.chosen == 3 and step.votes is not None
    assert sorted(i for group in step.votes.values() for i in group) == [1, 3, 4]
    cands = [e for e in events if isinstance(e, ev.Candidate) and e.step == 1]
    assert [e.cut for e in cands] == [True, False, True, False, False, True]
    assert all(e.code is None for e in cands if e.cut)
    d = traj.to_dict()["steps"][0]["candidates"]
    assert [c.get("cut", False) for c in d] == [True, False, True, False, False, True]
    assert Trajectory.from_dict(traj.to_dict()).steps[0].candidates == step.candidates
    assert traj.answer == "3"
    assert traj.to_dict()["straggler"] == "quorum"  # how the votes were cut is on record
    assert Trajectory.from_dict(traj.to_dict()).straggler == "quorum"


def test_wait_policy_passes_no_policy_to_the_engine() -> None:
    traj, engine, _ = _run([[act("final_answer(1)")] * 4], votes=4, straggler="wait")
    assert "straggler" not in engine.kwargs[0] and traj.answer == "1"
    assert traj.straggler == "wait"


def test_the_fixed_prompt_prefix_is_kept_before_the_first_step() -> None:
    traj, engine, _ = _run([[act("final_answer(1)")]], votes=1)
    prompt, before = engine.kept[0]
    assert before == "q?" and prompt[0]["role"] == "system" and "q?" in prompt[1]["content"]
    assert traj.tokens["prompt_evaluated"] == 7 + 10
    assert "straggler" not in engine.kwargs[0]  # one vote: nothing to cut
    assert "straggler" not in traj.to_dict()


def test_the_fallback_prefix_is_kept_too() -> None:
    traj, engine, _ = _run([[act("print(1)")], ["the answer is 1"]], votes=1, max_steps=1)
    assert traj.from_fallback and len(engine.kept) == 2
    fallback_chat, before = engine.kept[1]
    assert before == "q?" and fallback_chat[0]["role"] == "system"
    assert fallback_chat[0]["content"] != engine.kept[0][0][0]["content"]


def test_with_no_candidate_ok_the_first_finished_one_is_kept() -> None:
    traj, _, _ = _run([[None, "no code here!", "nor here!"]], votes=3, max_steps=1,
                      fallback=False)
    step = traj.steps[0]
    assert step.chosen == 1 and step.text == "no code here!"
    assert step.error is not None and "cut short" not in step.observation
