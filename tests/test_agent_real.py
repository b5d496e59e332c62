"""The agent on real engines: a tiny random GGUF (fast smoke test of the
plumbing, prefix reuse) and the real default model with the real sandbox and a
real index from the shared multi-hop paragraphs (slow; checks the machinery,
not the answers of a 135M model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.agent import events as ev
from edgeagent.agent.loop import Agent, AgentConfig
from edgeagent.agent.trajectory import Trajectory, append_record, read_records
from edgeagent.engines.llamacpp import LlamaCppEngine


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppEngine]:
    with LlamaCppEngine(tiny_gguf, n_ctx=4096) as engine:
        yield engine


def _well_formed(traj: Trajectory, votes: int) -> None:
    d = json.loads(traj.to_json())
    assert Trajectory.from_dict(d).to_dict() == d
    assert d["messages"][0]["role"] == "system" and d["messages"][1]["content"].startswith(
        "New task:\n")
    assert [m["role"] for m in d["messages"][2:]] == ["assistant", "user"] * (
        (len(d["messages"]) - 3) // 2) + ["assistant"]
    assert traj.steps
    for step in traj.steps:
        if votes > 1:
            assert step.candidates is not None and len(step.candidates) == votes
            assert step.chosen is not None and 0 <= step.chosen < votes
        assert step.observation
    assert d["tokens"]["prompt"] > 0 and d["tokens"]["completion"] > 0


@pytest.mark.parametrize("votes", [1, 3])
def test_tiny_model_runs_the_loop(tiny: LlamaCppEngine, votes: int) -> None:
    events: list[ev.Event] = []
    agent = Agent(tiny, config=AgentConfig(votes=votes, max_steps=2, max_tokens=24, seed=1),
                  on_event=events.append)
    traj = agent.run("What is 2 + 2?")
    _well_formed(traj, votes)
    assert traj.answer is not None  # the random model never answers: the fallback does
    assert isinstance(events[0], ev.RunStart) and isinstance(events[-1], ev.FinalAnswer)


def test_each_step_evaluates_only_new_tokens(tiny: LlamaCppEngine) -> None:
    from edgeagent.engines import prefix_store

    tiny.reset()
    prefix_store.clear()  # else the kept system prompt is loaded from an earlier test's engine
    agent = Agent(tiny, config=AgentConfig(max_steps=3, max_tokens=24, fallback=False))
    traj = agent.run("What is 2 + 2?")
    evaluated = [s.timings["prompt_tokens_evaluated"] for s in traj.steps]
    # the system prompt is kept before step 1 (`keep_prefix`); step 1 evaluates the task turn
    system = traj.tokens["prompt_evaluated"] - sum(evaluated)
    assert len(evaluated) == 3 and system > 300 and evaluated[0] < 200, (system, evaluated)
    # the next question reuses the kept system prompt: only its own tokens again
    other = agent.run("What is 3 + 3?")
    assert other.tokens["prompt_evaluated"] == sum(
        s.timings["prompt_tokens_evaluated"] for s in other.steps)
    assert other.steps[0].timings["prompt_tokens_evaluated"] < 200
    for k in (1, 2):
        prompt = tiny.tokenize(tiny.render(traj.messages[: 2 + 2 * k]))
        seen = tiny.tokenize(tiny.render(traj.messages[: 2 * k]) + traj.steps[k - 1].text)
        common = 0
        while common < min(len(prompt), len(seen)) and prompt[common] == seen[common]:
            common += 1
        new = len(prompt) - common  # the observation turn and the chat template's glue
        assert evaluated[k] <= new + 2 and evaluated[k] < len(prompt) / 2, (evaluated, new)


@pytest.fixture(scope="module")
def multihop_search(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.index import WikiIndex

    root = tmp_path_factory.mktemp("wiki")
    build_from_file("multihop", shared_data / "wiki" / "multihop_paragraphs.jsonl.gz",
                    root=root)
    return WikiIndex.open("multihop", root=root).search


@pytest.mark.slow
@pytest.mark.parametrize("votes", [1, 4])
def test_default_model_end_to_end(default_model: Path, multihop_search: object, votes: int,
                                  tmp_path: Path) -> None:
    events: list[ev.Event] = []
    with LlamaCppEngine(default_model, n_ctx=8192) as engine:
        agent = Agent(engine, search=multihop_search,  # type: ignore[arg-type]
                      config=AgentConfig(votes=votes, max_steps=3, max_tokens=160, seed=0),
                      on_event=events.append)
        traj = agent.run("Which country is the birthplace of the director of the film Jaws?",
                         gold="United States", dataset="test")
    _well_formed(traj, votes)
    assert traj.answer is not None
    assert sum(isinstance(e, ev.Vote) for e in events) == (len(traj.steps) if votes > 1 else 0)
    path = tmp_path / "runs.jsonl"
    append_record(path, traj)
    assert read_records(path)[0].to_dict() == traj.to_dict()
