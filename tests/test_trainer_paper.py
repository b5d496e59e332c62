"""Paper-exact training data, without torch: the student prompt on generated
trajectories, `str()` observations (the paper's smolagents agent), the paper's
strict step parser and the QA criteria in `distill filter`, `distill run`'s
quantization default. The real sandbox runs the code; the teacher is scripted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edgeagent.agent.loop import Agent
from edgeagent.agent.paper_format import paper_code_blobs, with_student_system
from edgeagent.agent.parse import parse_action
from edgeagent.agent.prompts import load_prompts
from edgeagent.agent.trajectory import StepRecord, Trajectory, read_records
from edgeagent.cli import main
from edgeagent.engines.base import Completion, Message, Timings
from edgeagent.tools.sandbox.host import CodeSandbox
from edgeagent.wiki.passages import Passage
from trainer.filter import filter_records
from trainer.generate import GenerateConfig, generate
from trainer.run import plan


def act(thought: str, code: str) -> str:
    return f"Thought: {thought}\nCode:\n```py\n{code}\n```"


def search(query: str, k: int) -> list[Passage]:
    return [Passage("Paris", "Paris is the capital of France.\nIt lies on the Seine.", 12.0,
                    "p1"), Passage("Lyon", "Lyon is a city in France.", 6.0, "p2")][:k]


class Replay:
    """An engine that answers the next scripted text and records every chat it was sent."""

    name = "replay"

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.sent: list[list[Message]] = []

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1, **kw: Any
                 ) -> list[Completion]:
        assert not isinstance(messages, str)
        if messages[-1]["content"] == "Say OK.":  # generate's preflight
            return [Completion("OK", "stop", 3, 1, Timings())]
        self.sent.append([dict(m) for m in messages])  # type: ignore[misc]
        return [Completion(self.texts.pop(0), "stop", 10, 5, Timings())]

    def close(self) -> None:
        pass


SCRIPT = [
    act("Search first.", 'r = web_search("capital of France")\nr'),
    act("Try a division.", "print('half')\n1/0"),
    act("Use numpy.", "import numpy as np\nnp.float64(3.5)"),
    act("Answer.", 'final_answer("Paris")'),
]


# --------------------------------------------------------------------------- observations


def test_last_output_is_str_like_the_papers_agent() -> None:
    with CodeSandbox(tools={"web_search": lambda q: f"line one\nline two for {q}"}) as box:
        text = box.run('web_search("x")')
        assert text.last_value_repr == repr("line one\nline two for x")
        assert text.observation().endswith(
            "Last output from code snippet:\nline one\nline two for x")
        num = box.run("import numpy as np\nnp.float64(3.5)")
        assert num.observation().endswith("Last output from code snippet:\n3.5")
        assert num.last_value_repr != "3.5"  # repr names the type: np.float64(3.5)
        final = box.run('final_answer("Paris")')
        assert final.observation().endswith("Last output from code snippet:\nParis")


# --------------------------------------------------------------------------- student prompt


def _generate(tmp_path: Path, texts: Sequence[str]) -> Trajectory:
    data = tmp_path / "qa_train_1.json"
    data.write_text(json.dumps({"examples": [
        {"id": "q1", "question": "What is the capital of France?", "answer": "Paris"}]}))
    out = tmp_path / "traj.jsonl"
    teacher = Replay(texts)
    cfg = GenerateConfig(teacher="http://teacher.invalid", data=data, out=out)
    report = generate(cfg, search=search, engine_factory=lambda: teacher)
    assert report.written == 1
    # the teacher worked under its long prompt ...
    assert teacher.sent[0][0]["content"] == load_prompts().system("teacher")
    return read_records(out)[0]


def test_generated_trajectory_is_the_chat_the_student_is_sent(tmp_path: Path) -> None:
    rec = _generate(tmp_path, SCRIPT)
    student_prompt = load_prompts().system("student")
    assert rec.messages[0] == {"role": "system", "content": student_prompt}
    assert rec.answer == "Paris" and len(rec.steps) == 4
    obs = rec.steps[0].observation
    assert "\n===== Document 0, similarity: 0.55 =====\n\"Paris\"\nParis is the capital" in obs
    assert "\\n" not in obs  # str(), not repr(): real lines
    assert rec.steps[2].observation.endswith("Last output from code snippet:\n3.5")
    # the student, run on the same actions, is sent exactly the training chat at each step
    student = Replay([s.text for s in rec.steps])
    again = Agent(student, search=search).run(rec.question)
    assert again.messages == rec.messages
    for k, sent in enumerate(student.sent):
        assert sent == rec.messages[: 2 + 2 * k]


def test_with_student_system_replaces_or_adds_the_system_turn() -> None:
    student = load_prompts().system("student")
    chat: list[Message] = [{"role": "system", "content": "long"}, {"role": "user", "content": "q"}]
    assert with_student_system(chat) == [{"role": "system", "content": student}, chat[1]]
    assert with_student_system(chat[1:]) == [{"role": "system", "content": student}, chat[1]]
    assert chat[0]["content"] == "long"  # the input is not changed


# --------------------------------------------------------------------------- filtering


def _traj(tid: str, texts: list[str], answer: str, gold: str, dataset: str = "hotpotqa"
          ) -> Trajectory:
    steps = []
    for t in texts:
        a = parse_action(t)
        steps.append(StepRecord(thought=a.thought, code=a.code, observation="obs",
                                error=a.error, text=t))
    steps[-1].final = True
    messages: list[Message] = [{"role": "system", "content": "s"},
                               {"role": "user", "content": "q"}]
    for t in texts:
        messages += [{"role": "assistant", "content": t}, {"role": "user", "content": "obs"}]
    return Trajectory(id=tid, question="Who?", model="m", engine="e", prompt_version="v",
                      steps=steps, answer=answer, messages=messages[:-1], gold=gold,
                      dataset=dataset)


def test_strict_parser_is_the_papers() -> None:
    assert paper_code_blobs(act("t", "x = 1")) == "x = 1"
    assert paper_code_blobs("```python\na\n```\n```\nb\n```") == "a\n\nb"
    assert paper_code_blobs("final_answer(3)") == "final_answer(3)"  # bare valid Python
    cut = "Thought: t\nCode:\n```py\nx = 1\nprint(x)"  # max_tokens hit before the fence
    assert parse_action(cut).code is not None  # inference recovers it ...
    assert paper_code_blobs(cut) is None  # ... the paper's parser does not
    assert paper_code_blobs("```py x = 1```") is None


def test_filter_uses_the_strict_parser() -> None:
    whole = _traj("ok", [act("a", 'final_answer("Paris")')], "Paris", "Paris")
    cut = _traj("cut", ["Thought: a\nCode:\n```py\nr = 2", act("b", 'final_answer("Paris")')],
                "Paris", "Paris")
    kept, report = filter_records([whole, cut])
    assert [t.id for t in kept] == ["ok"]
    assert report.dropped["parse error"] == 1


class Judge:
    """A stand-in for `LLMJudge`: answers by a fixed verdict table."""

    def __init__(self, verdicts: dict[str, bool]) -> None:
        self.verdicts = verdicts
        self.asked: list[str] = []

    def __call__(self, question: str, prediction: str, gold: str) -> Any:
        self.asked.append(prediction)
        return type("Verdict", (), {"correct": self.verdicts[prediction], "explanation": ""})


def _qa_set() -> list[Trajectory]:
    answers = {"exact": "President Richard Nixon", "rephrased": "Richard Nixon",
               "wrong": "Richard", "math": "\\boxed{72}"}
    out = [_traj(k, [act("a", f'final_answer("{v}")')], v, "President Richard Nixon")
           for k, v in answers.items() if k != "math"]
    out.append(_traj("math", [act("a", 'final_answer("72")')], "\\boxed{72}", "72", "gsm8k"))
    return out


@pytest.mark.parametrize(("f1", "judge", "kept"), [
    (None, None, ["exact", "math"]),
    (0.8, None, ["exact", "rephrased", "math"]),
    (0.8, {"President Richard Nixon": True, "Richard Nixon": True, "Richard": True},
     ["exact", "rephrased", "wrong", "math"]),
])
def test_qa_criteria_and_what_each_keeps(f1: float | None, judge: dict[str, bool] | None,
                                         kept: list[str]) -> None:
    j = Judge(judge) if judge is not None else None
    out, report = filter_records(_qa_set(), j, f1=f1)  # type: ignore[arg-type]
    assert [t.id for t in out] == kept
    assert report.qa_scored == 3  # the math record is scored by equivalence, not counted
    assert report.qa_keeps["exact match"] == 1
    assert report.qa_keeps["F1 >= 0.8"] == 2  # F1("Richard Nixon", gold) = 0.8
    assert report.qa_keeps["judge"] == (3 if judge else 0)
    line = report.lines()[-1]
    assert "exact match keeps 1" in line and "F1 >= 0.8 keeps 2" in line
    assert line.endswith(f"(used: {'judge' if judge else 'F1 >= 0.8' if f1 else 'exact match'})")


def test_cli_filter_f1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.agent.trajectory import append_records

    src = tmp_path / "t.jsonl"
    append_records(src, _qa_set())
    assert main(["distill", "filter", str(src), "--out", str(tmp_path / "k.jsonl"),
                 "--f1", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "kept 3 of 4" in out and "F1 >= 0.8 keeps 2 (used: F1 >= 0.8)" in out
    assert main(["distill", "filter", str(src), "--out", str(tmp_path / "k.jsonl"),
                 "--f1", "1.5"]) != 0
    assert "--f1 must be in (0, 1]" in capsys.readouterr().err


# --------------------------------------------------------------------------- run, help


def test_run_quantizes_to_q8_0_by_default(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('[generate]\nteacher = "gold"\ndata = "d.jsonl"\n[train]\nmodel = "m"\n')
    last = plan(cfg)[-1]
    assert last.name == "quantize" and last.argv[last.argv.index("--type") + 1] == "Q8_0"


def test_prefix_cache_is_labelled_an_approximation(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["distill", "train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--prefix-cache an APPROXIMATION, off by default" in help_text


# --------------------------------------------------------------------------- batches


def test_length_grouped_order_deals_every_example_once_with_little_padding() -> None:
    import random

    from trainer.examples import epoch_order, padding_waste
    from trainer.render import Rendered

    rng = random.Random(0)
    lengths = [rng.randint(50, 2000) for _ in range(203)]
    examples = [Rendered(list(range(n)), [1] * n) for n in lengths]
    plain = epoch_order(lengths, 4, random.Random(1))
    assert plain == epoch_order(lengths, 4, random.Random(1), group_by_length=False)
    grouped = epoch_order(lengths, 4, random.Random(1), group_by_length=True)
    assert sorted(grouped) == sorted(plain) == list(range(203))
    assert grouped != plain

    def batches(order: list[int]) -> list[list[Rendered]]:
        return [[examples[i] for i in order[k:k + 4]] for k in range(0, len(order), 4)]

    before, after = padding_waste(batches(plain)), padding_waste(batches(grouped))
    assert before > 0.3 and after < before / 5, (before, after)
    # one example per batch: nothing to group, the plain shuffle
    assert epoch_order(lengths, 1, random.Random(1), group_by_length=True) == \
        epoch_order(lengths, 1, random.Random(1))
