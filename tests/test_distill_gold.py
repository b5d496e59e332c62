"""`distill gold --bench hotpotqa` on ../shared/data with the real `multihop` index, and
`--format cot` for HotpotQA and GSM8K: what survives, that every search step shows the
index's real result for its query, that the agent loop replays a gold trajectory to
the same chat (real sandbox, real index), and that the CoT targets read as the eval
reads a CoT answer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeagent.agent.loop import Agent
from edgeagent.agent.prompts import load_prompts
from edgeagent.agent.trajectory import Trajectory, read_records
from edgeagent.cli import main
from edgeagent.engines.base import Completion, Timings
from edgeagent.eval.cot import extract_answer
from edgeagent.locations import wiki_dir
from edgeagent.scoring import score_answer
from edgeagent.wiki.tool import format_web_search
from trainer.filter import filter_records
from trainer.gold_qa import GoldQA, GoldQaError


@pytest.fixture(scope="module")
def multihop_root(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeagent.wiki.build import build_from_file

    root = tmp_path_factory.mktemp("wiki")
    build_from_file("multihop", shared_data / "wiki" / "multihop_paragraphs.jsonl.gz",
                    root=root)
    return root


@pytest.fixture
def multihop(multihop_root: Path) -> Callable[[str, int], Any]:
    """The index, visible to the CLI under this test's EDGEAGENT_HOME."""
    from edgeagent.wiki.index import WikiIndex

    wiki_dir().mkdir(parents=True, exist_ok=True)
    os.symlink(multihop_root / "multihop", wiki_dir() / "multihop")
    return WikiIndex.open("multihop").search


def _gold_titles(shared_data: Path) -> Path:
    return shared_data / "retrieval" / "hotpotqa_gold_titles.jsonl"


def _rows(path: Path, n: int) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text("utf-8").split("\n")[:n] if ln.strip()]


class Replay:
    name = "replay"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def generate(self, messages: Any, **kw: Any) -> list[Completion]:
        return [Completion(self.texts.pop(0), "stop", 1, 1, Timings())]

    def close(self) -> None:
        pass


def test_gold_hotpotqa_limit_20(shared_data: Path, multihop: Callable[[str, int], Any],
                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qa.jsonl"
    src = _gold_titles(shared_data)
    assert main(["distill", "gold", "--bench", "hotpotqa", "--data", str(src),
                 "--limit", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = read_records(out)
    assert f"{len(records)} of 20 questions survive" in printed
    assert len(records) > 0
    rows = {r["id"]: r for r in _rows(src, 20)}
    student = load_prompts().system("student")
    for rec in records:
        row = rows[rec.id]
        assert rec.answer == rec.gold == row["answer"] and rec.dataset == "hotpotqa"
        assert rec.messages[0] == {"role": "system", "content": student}
        searches = rec.steps[:-1]
        assert len(searches) == len(row["gold_titles"]) and rec.steps[-1].final
        for step in searches:
            query = json.loads(step.code.split("query=", 1)[1].split(")\n", 1)[0])
            assert query in row["gold_titles"]
            # the observation is the index's real top 3 for the query, with the page in it
            assert format_web_search(multihop(query, 3)) in step.observation
            assert f'"{query}"\n' in step.observation
        assert score_answer(rec.answer, rec.gold, kind="qa").correct
    kept, report = filter_records(records)
    assert len(kept) == len(records), report.lines()  # strict parser, exact match


def test_agent_loop_replays_a_gold_trajectory_exactly(
    shared_data: Path, multihop: Callable[[str, int], Any]
) -> None:
    _, gold, _ = _first_gold(shared_data, multihop)
    engine = Replay([s.text for s in gold.steps])
    again = Agent(engine, search=multihop).run(gold.question)  # real sandbox, real index
    assert again.answer == gold.answer
    assert again.messages == gold.messages
    assert [s.observation for s in again.steps] == [s.observation for s in gold.steps]


def _first_gold(shared_data: Path, search: Callable[[str, int], Any]
                ) -> tuple[dict[str, Any], Trajectory, Trajectory]:
    builder = GoldQA(search)
    for row in _rows(_gold_titles(shared_data), 40):
        try:
            agent, cot = builder.build(row, row["id"])
        except GoldQaError:
            continue
        if row["answer"].lower() not in ("yes", "no"):
            return row, agent, cot
    raise AssertionError("no gold trajectory in the first 40 questions")


def test_hotpotqa_supporting_facts_format(shared_data: Path,
                                         multihop: Callable[[str, int], Any]) -> None:
    """HotpotQA's own layout: the supporting sentences are the reasoning, verbatim."""
    row, _, _ = _first_gold(shared_data, multihop)
    hits = {t: next(p for p in multihop(t, 3) if p.title == t) for t in row["gold_titles"]}
    facts = {t: p.text.split(". ")[-1].strip() for t, p in hits.items()}  # a later sentence
    example = {"id": row["id"], "question": row["question"], "answer": row["answer"],
               "supporting_facts": [[t, 1] for t in hits],
               "context": [[t, ["An unrelated first sentence.", s]] for t, s in facts.items()]}
    agent, cot = GoldQA(multihop).build(example, "x")
    thoughts = " ".join(s.thought for s in agent.steps)
    for sentence in facts.values():
        assert sentence in thoughts and sentence in cot.messages[-1]["content"]
    assert "An unrelated first sentence." not in thoughts


def test_exclude_leaves_out_an_eval_set(shared_data: Path, multihop: Callable[[str, int], Any],
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    src = _gold_titles(shared_data)
    some = tmp_path / "eval.jsonl"
    some.write_text("".join(json.dumps(r) + "\n" for r in _rows(src, 20)[:10]))
    assert main(["distill", "gold", "--bench", "hotpotqa", "--data", str(src), "--limit", "20",
                 "--exclude", str(some), "--out", str(tmp_path / "o.jsonl")]) in (0, 1)
    printed = capsys.readouterr().out
    assert "of 10 questions survive (10 excluded before)" in printed
    ids = {r["id"] for r in _rows(src, 10)}
    if (tmp_path / "o.jsonl").exists():
        assert not ids & {r.id for r in read_records(tmp_path / "o.jsonl")}


def test_gold_hotpotqa_cot_matches_the_agent_questions(
    shared_data: Path, multihop: Callable[[str, int], Any], tmp_path: Path
) -> None:
    src = _gold_titles(shared_data)
    common = ["distill", "gold", "--bench", "hotpotqa", "--data", str(src), "--limit", "20"]
    assert main([*common, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*common, "--format", "cot", "--out", str(tmp_path / "c.jsonl")]) == 0
    agent, cot = read_records(tmp_path / "a.jsonl"), read_records(tmp_path / "c.jsonl")
    assert [r.id for r in agent] == [r.id for r in cot]
    for a, c in zip(agent, cot, strict=True):
        _check_cot(c, a.answer)
        # the CoT reasoning is the agent's evidence: the sentences its thoughts quote
        evidence = c.messages[2]["content"].rsplit("\n<answer>", 1)[0]
        quoted = " ".join(s.thought.split("From the results: ", 1)[1].rsplit(
            " Now I need", 1)[0].rsplit(" So the answer", 1)[0]
            for s in a.steps[1:])
        assert evidence == quoted


def _check_cot(rec: Trajectory, answer: str | None) -> None:
    from edgeagent.eval.cot import load_cot_prompts

    assert rec.messages[0]["content"] == load_cot_prompts().systems["cot"]
    assert rec.messages[1] == {"role": "user", "content": rec.question}
    reply = rec.messages[2]["content"]
    got, found = extract_answer(reply)
    assert found and got == answer
    assert score_answer(got, rec.gold, dataset=rec.dataset).correct


def test_gold_gsm8k_cot(shared_data: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    out = tmp_path / "cot.jsonl"
    assert main(["distill", "gold", "--format", "cot", "--data", str(src), "--limit", "5",
                 "--out", str(out)]) == 0
    assert "wrote 5 gold trajectories (cot)" in capsys.readouterr().out
    rows = _rows(src, 5)
    for rec, row in zip(read_records(out), rows, strict=True):
        _check_cot(rec, rec.answer)
        reply = rec.messages[2]["content"]
        assert "<<" not in reply and ">>" not in reply
        first = row["answer"].split("\n")[0]
        assert first.split("<<")[0].strip() in reply  # the solution's own words
    kept, _ = filter_records(read_records(out))
    assert len(kept) == 5


def test_gold_gsm8k_cot_keeps_the_agent_questions(shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # example 135 of the train set has no calculator annotation: the agent format skips
    # it, and so must the CoT format, or the two students learn from different questions
    src = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    common = ["distill", "gold", "--data", str(src), "--limit", "140"]
    assert main([*common, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*common, "--format", "cot", "--out", str(tmp_path / "c.jsonl")]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    agent, cot = read_records(tmp_path / "a.jsonl"), read_records(tmp_path / "c.jsonl")
    assert len(agent) < 140 and "gsm8k_train_7473:135: no calculator annotations" in out
    assert [r.id for r in cot] == [r.id for r in agent]


def test_a_page_the_search_does_not_return_drops_the_question(
    multihop: Callable[[str, int], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "q.jsonl"
    rows = [{"id": "a", "question": "Who?", "answer": "Kansas Song",
             "gold_titles": ["Kansas Song", "Zzyzx Qwertyuiop Nonexistent Page"]},
            {"id": "b", "question": "Who?", "answer": "Nobody Atall",
             "gold_titles": ["Kansas Song"]},
            {"id": "c", "question": "Who?", "answer": "no", "gold_titles": []}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["distill", "gold", "--bench", "hotpotqa", "--data", str(data),
                 "--out", str(tmp_path / "o.jsonl")])
    captured = capsys.readouterr()
    assert code == 2 and "no gold hotpotqa trajectories" in captured.err
    assert "0 of 3 questions survive" in captured.out
    assert "dropped     1  search missed a supporting page, e.g. a:" in captured.out
    assert "dropped     1  answer not in the passages, e.g. b:" in captured.out
    assert "dropped     1  unusable, e.g. c:" in captured.out


def test_gold_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a", "gold_titles": ["T"]}) + "\n")
    code = main(["distill", "gold", "--bench", "hotpotqa", "--data", str(data),
                 "--wiki", "nosuch", "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code != 0 and "no wiki index named 'nosuch'" in err and "Traceback" not in err
    assert main(["distill", "gold", "--data", str(data), "--exclude", str(data),
                 "--out", str(tmp_path / "o.jsonl")]) != 0
    assert "--exclude goes with --bench hotpotqa" in capsys.readouterr().err
