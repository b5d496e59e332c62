"""The eval harness with a fake engine: benchmark loading, cot/direct answers,
metric aggregation, resume within a process, run settings, compare (table +
PNG), one-line CLI errors. Fast: no model (the agent mode uses the real sandbox)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_eval_support import AnswerEngine, write_bench

from edgeagent.agent.trajectory import Trajectory, read_records
from edgeagent.cli import main
from edgeagent.engines.base import Completion, Timings
from edgeagent.errors import UserError
from edgeagent.eval import compare
from edgeagent.eval.cot import CotRunner, extract_answer, load_cot_prompts
from edgeagent.eval.data import BENCHMARKS, data_root, load_benchmark, parse_specs
from edgeagent.eval.metrics import record_metrics
from edgeagent.eval.runner import EvalConfig, run_eval

QA = [
    {"id": "q1", "question": "Who wrote Hamlet?", "answer": "William Shakespeare"},
    {"id": "q2", "question": "Capital of France?", "answer": "Paris"},
    {"id": "q3", "question": "Largest planet?", "answer": "Jupiter"},
    {"id": "q4", "question": "Unknown?", "answer": "Something"},
]
MATH = [
    {"id": 1, "question": "What is 2+2?", "answer": "4"},
    {"id": 2, "question": "Half of 9/7?", "answer": r"\frac{9}{14}"},
    {"id": 3, "question": "Big product?", "answer": "13138980.0"},
]
ANSWERS = {
    "Who wrote Hamlet?": "the William Shakespeare.",  # EM after normalisation
    "Capital of France?": "Paris, France",  # EM 0, F1 2/3
    "Largest planet?": "Saturn",  # wrong
    # "Unknown?" -> the engine writes no code: a parse error, then the fallback
    "What is 2+2?": "4",
    "Half of 9/7?": "9/14",
    "Big product?": "13,138,980",
}


@pytest.fixture
def benches(tmp_path: Path) -> list[Any]:
    qa = write_bench(tmp_path / "hotpotqa_mini.json", QA)
    math = write_bench(tmp_path / "gsm_hard_mini.json", MATH)
    return [load_benchmark(str(qa)), load_benchmark(str(math))]


def _run(benches: list[Any], out: Path, mode: str = "agent", **kw: Any) -> dict[str, Any]:
    agent = mode == "agent"
    log = kw.pop("log", None)
    return run_eval(benches, out, EvalConfig(mode=mode, model="fake"),  # type: ignore[arg-type]
                    make_engine=lambda: AnswerEngine(ANSWERS, agent=agent, log=log),
                    progress=False, **kw)


# -- data ---------------------------------------------------------------------


def test_shared_benchmarks_load(shared_data: Path) -> None:
    sizes = {"hotpotqa": 500, "musique": 500, "2wiki": 500, "math500": 500, "gsm-hard": 500,
             "gsm8k": 1319, "aime": 90, "olymmath": 200}
    assert set(sizes) == set(BENCHMARKS)
    for name, size in sizes.items():
        b = load_benchmark(name, shared_data)
        assert len(b.examples) == size and len({e.id for e in b.examples}) == size
        assert b.kind == ("qa" if name in ("hotpotqa", "musique", "2wiki") else "math")
    gsm = load_benchmark("gsm8k", shared_data)
    assert gsm.examples[0].id == "0" and "#### 18" in str(gsm.examples[0].gold)


def test_specs_and_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_specs("hotpotqa, olymath,2wikimultihopqa,hotpotqa") == [
        "hotpotqa", "olymmath", "2wiki"]
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", tmp_path)
    with pytest.raises(UserError, match="benchmark file missing"):
        load_benchmark("gsm8k", tmp_path)
    monkeypatch.setenv("EDGEAGENT_DATA", str(tmp_path / "absent"))
    with pytest.raises(UserError, match="EDGEAGENT_DATA points to a missing folder"):
        data_root()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: bad JSON"):
        load_benchmark(str(bad))


# -- cot / direct ---------------------------------------------------------------


def test_cot_prompt_is_the_papers_verbatim() -> None:
    text = load_cot_prompts().systems["cot"]
    # sha256 of `system_prompt` in Nardien/agent-distillation@0f6cae3 teacher_model.yaml
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "cd4355b710cb66b854e3ef0e56c4b6f2acf560cd0abb3d5a5fdd318290a67b78")
    assert text.endswith("Now, please answer the following question: ")


def test_extract_answer() -> None:
    assert extract_answer("so <answer> Paris </answer> and <answer>x</answer>") == (
        "Paris", True)
    assert extract_answer(r"thus \boxed{\frac{9}{14}}.") == (r"\boxed{\frac{9}{14}}", True)
    assert extract_answer(" just words ") == ("just words", False)


class VotingEngine:
    name = "voting"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.calls: list[dict[str, Any]] = []

    def generate(self, messages: Any, **kw: Any) -> list[Completion]:
        self.calls.append(dict(kw, messages=messages))
        return [Completion(t, "stop", 50, 7, Timings()) for t in self.texts]

    def close(self) -> None:
        pass


def test_cot_majority_vote_records_candidates() -> None:
    engine = VotingEngine(["<answer>\\boxed{0.5}</answer>", "<answer>7</answer>",
                           "no answer", "<answer>\\boxed{\\frac{1}{2}}</answer>"])
    traj = CotRunner(engine, votes=4, model_name="m").run("q?", task_id="a", gold="1/2",
                                                          dataset="math500")
    call = engine.calls[0]
    assert call["n"] == 4 and call["temperature"] == 0.4 and call["top_p"] == 0.8
    assert call["stop"] == ["</answer>"]
    assert call["messages"][0]["content"] == load_cot_prompts().systems["cot"]
    assert call["messages"][1] == {"role": "user", "content": "q?"}
    step = traj.steps[0]
    # 1/2 and 0.5 normalise differently, so 0.5 (earliest of the 1-vote ties) wins
    assert step.chosen == 0 and traj.answer == r"\boxed{0.5}"
    assert step.candidates is not None and [c.ok for c in step.candidates] == [
        True, True, False, True]
    assert traj.tokens == {"prompt": 50, "completion": 28, "prompt_evaluated": 0}
    assert [m["role"] for m in traj.messages] == ["system", "user", "assistant"]
    # the record survives the shared reader/writer
    assert Trajectory.from_dict(json.loads(traj.to_json())).steps[0].votes == step.votes


# -- runs and metrics -------------------------------------------------------------


def test_agent_run_metrics(benches: list[Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = _run(benches, out)
    qa, math = summary["benchmarks"]["hotpotqa_mini"], summary["benchmarks"]["gsm_hard_mini"]
    assert qa["kind"] == "qa" and qa["n"] == qa["total"] == 4
    assert qa["em"] == 0.25 and qa["score"] == 0.25
    assert qa["f1"] == pytest.approx((1 + 2 / 3 + 0 + 0) / 4, abs=1e-3)
    assert math["kind"] == "math" and math["accuracy"] == 1.0 and math["score"] == 1.0
    # q4: 5 unparseable actions, then the fallback; the others answer in one step
    assert qa["steps_per_question"] == (1 + 1 + 1 + 5) / 4
    assert qa["parse_error_rate"] == pytest.approx(5 / 8)
    assert qa["tool_calls_per_question"] == 0.75 and qa["exec_error_rate"] == 0.0
    assert qa["fallback_rate"] == 0.25
    assert math["prompt_tokens_per_question"] == 100.0
    assert summary["average"]["score"] == pytest.approx((0.25 + 1.0) / 2)
    assert summary["complete"] is True
    assert json.loads((out / "summary.json").read_text()) == summary
    recs = read_records(out / "hotpotqa_mini.jsonl")
    assert sorted(r.id for r in recs) == ["q1", "q2", "q3", "q4"]
    assert all(r.dataset == "hotpotqa_mini" and r.model == "fake" for r in recs)
    assert {r.id: r.score for r in recs} == {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.0}
    math_ids = [r.id for r in read_records(out / "gsm_hard_mini.jsonl")]
    assert sorted(math_ids) == ["1", "2", "3"]


def test_cot_and_direct_runs(benches: list[Any], tmp_path: Path) -> None:
    for mode in ("cot", "direct"):
        summary = _run(benches, tmp_path / mode, mode=mode)
        qa = summary["benchmarks"]["hotpotqa_mini"]
        assert qa["em"] == 0.25 and qa["steps_per_question"] == 1.0
        assert qa["parse_error_rate"] == 0.25 and qa["tool_calls_per_question"] == 0.0
        assert summary["benchmarks"]["gsm_hard_mini"]["accuracy"] == 1.0
        rec = read_records(tmp_path / mode / "hotpotqa_mini.jsonl")[0]
        assert rec.prompt_version == f"cot-v1:{mode}" and rec.steps[0].code is None
        assert rec.messages[-1]["content"].endswith("</answer>")


def test_resume_in_process_and_limit(benches: list[Any], tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "asked.jsonl"
    first = _run(benches[:1], out, limit=2, log=log)
    assert first["benchmarks"]["hotpotqa_mini"]["n"] == 2
    asked_first = log.read_text().splitlines()
    second = _run(benches[:1], out, limit=3, log=log)
    asked = [json.loads(x) for x in log.read_text().splitlines()[len(asked_first):]]
    assert asked == ["Largest planet?"]  # only the new question
    assert second["benchmarks"]["hotpotqa_mini"]["n"] == 3 and second["complete"]
    ids = [r.id for r in read_records(out / "hotpotqa_mini.jsonl")]
    assert sorted(ids) == ["q1", "q2", "q3"]


def test_resume_with_other_settings_is_refused(benches: list[Any], tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(benches[:1], out, limit=1)
    with pytest.raises(UserError, match="other settings \\(mode: 'agent' there, 'cot' now\\)"):
        _run(benches[:1], out, mode="cot", limit=1)


def test_parallel_workers_each_get_an_engine(benches: list[Any], tmp_path: Path) -> None:
    engines: list[AnswerEngine] = []

    def make() -> AnswerEngine:
        e = AnswerEngine(ANSWERS, agent=False, delay=0.05)
        engines.append(e)
        return e

    summary = run_eval(benches, tmp_path / "run", EvalConfig(mode="cot"), make_engine=make,
                       workers=3, progress=False)
    assert summary["average"]["n"] == 7 and summary["complete"]
    assert 1 < len(engines) <= 3 and all(e.closed for e in engines)


def test_record_metrics_on_real_answers(shared_data: Path) -> None:
    cases = [("math500", "0", r"\boxed{\left( 3, \frac{\pi}{2} \right)}"),
             ("gsm-hard", "1309", "13,138,980"),
             ("hotpotqa", "5a85eed75542996432c5713b", "coahuila, mexico.")]
    for name, ex_id, pred in cases:
        b = load_benchmark(name, shared_data)
        ex = next(e for e in b.examples if e.id == ex_id)
        traj = Trajectory(id=ex.id, question=ex.question, model="m", engine="e",
                          prompt_version="v", answer=pred, gold=ex.gold, dataset=name)
        assert record_metrics(traj, b.kind)["correct"] == 1.0, name


# -- compare ---------------------------------------------------------------------


def test_compare_table_and_png(benches: list[Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _run(benches, tmp_path / "agent")
    _run(benches, tmp_path / "cot", mode="cot")
    runs = compare.load_runs([tmp_path / "agent", tmp_path / "cot"])
    assert compare.labels(runs) == ["agent · votes 1", "cot · votes 1"]
    assert compare.columns(runs) == ["gsm_hard_mini", "hotpotqa_mini"]
    rows = compare.rows(runs)
    assert rows[0][1] == [1.0, 0.25, 0.625]
    png = compare.chart(runs, tmp_path / "c" / "cmp.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    import matplotlib.image

    assert matplotlib.image.imread(str(png)).shape[2] in (3, 4)
    with pytest.raises(UserError, match="unknown metric 'bogus'"):
        compare.rows(runs, "bogus")


def test_compare_cli(benches: list[Any], tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    _run(benches, tmp_path / "a")
    png = tmp_path / "out.png"
    assert main(["eval", "compare", str(tmp_path / "a"), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "hotpotqa_mini" in out and "25.0" in out and png.exists()


# -- CLI errors -------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["eval", "--out", "x"], "--bench is required"),
    (["eval", "--bench", "gsm8k"], "--out DIR is required"),
    (["eval", "--bench", "nope", "--out", "{tmp}/o"], "unknown benchmark 'nope'"),
    (["eval", "--bench", "gsm8k", "--out", "{tmp}/o", "--votes", "0"], "--votes must be"),
    (["eval", "--bench", "gsm8k", "--out", "{tmp}/o", "--data-root", "{tmp}/none"],
     "data folder not found"),
    (["eval", "--bench", "gsm8k", "--out", "{tmp}/o", "--data-root", "{tmp}"],
     "benchmark file missing"),
    (["eval", "--bench", "gsm8k", "--out", "{tmp}/o", "--mode", "weird"], "invalid choice"),
    (["eval", "compare", "{tmp}"], "no summary.json in"),
])
def test_cli_errors_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_judge_scores_qa_only(benches: list[Any], tmp_path: Path) -> None:
    from edgeagent.scoring.judge import Verdict

    asked: list[tuple[str, str, str]] = []

    def judge(question: str, predicted: str, gold: str) -> Verdict:
        asked.append((question, predicted, gold))
        return Verdict(gold.split()[-1].lower() in predicted.lower(), "fake")

    summary = run_eval(benches, tmp_path / "run", EvalConfig(mode="cot", judge="http://x"),
                       make_engine=lambda: AnswerEngine(ANSWERS, agent=False),
                       judge=judge, progress=False)  # type: ignore[arg-type]
    qa = summary["benchmarks"]["hotpotqa_mini"]
    assert qa["judge"] == 0.5 and qa["score"] == 0.5 and qa["em"] == 0.25
    assert len(asked) == 4  # never asked about math
    assert summary["run"]["judge"] == "http://x"


def test_compare_markdown_marks_partial_runs_and_the_best(
        benches: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(benches, tmp_path / "agent")
    _run(benches, tmp_path / "cot", mode="cot", limit=2)  # fewer questions: n is shown
    runs = compare.load_runs([tmp_path / "agent", tmp_path / "cot"])
    lines = compare.markdown(runs, "score").splitlines()
    assert lines[0] == "score (%)"
    assert lines[2] == "| run | gsm_hard_mini (math) | hotpotqa_mini (qa) | avg |"
    assert lines[4] == "| agent · votes 1 | 100.0 (n=3) | 25.0 (n=4) | 62.5 |"
    # gsm_hard_mini is a tie: no best there
    assert lines[5] == "| cot · votes 1 | 100.0 (n=2) | **50.0 (n=2)** | **75.0** |"
    assert main(["eval", "compare", str(tmp_path / "agent"), "--metric", "steps_per_question",
                 "--markdown", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("steps_per_question\n")
    assert out.endswith("| fake · agent · votes 1 | 1.00 | 2.00 | 1.50 |\n")  # one run: the model


def test_compare_best_is_the_lowest_error_rate_and_none_for_steps(
        benches: list[Any], tmp_path: Path) -> None:
    _run(benches, tmp_path / "agent")  # hotpotqa_mini: parse errors 5/8, 2.0 steps
    _run(benches, tmp_path / "cot", mode="cot")  # parse errors 1/4, 1 step
    runs = compare.load_runs([tmp_path / "agent", tmp_path / "cot"])
    errors = compare.markdown(runs, "parse_error_rate").splitlines()
    assert "| 62.5 |" in errors[4] and "| **25.0** |" in errors[5]
    assert "**" not in compare.markdown(runs, "steps_per_question")


def test_straggler_policy_is_part_of_a_voting_run_only(tmp_path: Path) -> None:
    from edgeagent.eval.runner import check_run_file

    assert EvalConfig(votes=1).identity()["straggler"] is None  # greedy: no policy to record
    assert EvalConfig(mode="cot", votes=8).identity()["straggler"] is None
    assert EvalConfig(votes=8).identity()["straggler"] == "quorum"
    out = tmp_path / "run"
    check_run_file(out, EvalConfig(votes=8, straggler="wait"))
    check_run_file(out, EvalConfig(votes=8, straggler="wait"))  # same settings: resumes
    with pytest.raises(UserError, match="other settings \\(straggler: 'wait' there, 'quorum'"):
        check_run_file(out, EvalConfig(votes=8))
    old = json.loads((out / "run.json").read_text())
    del old["straggler"]  # a run.json written before the setting existed
    (out / "run.json").write_text(json.dumps(old))
    check_run_file(out, EvalConfig(votes=8))
