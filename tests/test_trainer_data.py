"""Tests for the torch-free half of `trainer`: gold trajectories, filtering, import, CLI.

Real data: GSM8K train questions from ../shared/data (skipped when absent).
The imported smolagents `log_data` entries are built here in the shape the
reference code writes (roles system/user/assistant/tool-call/tool-response,
content as text parts, `MessageRole.*` spellings, `log_data` as a JSON string
as on the Hub).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeagent.agent.parse import parse_action
from edgeagent.agent.trajectory import StepRecord, Trajectory, read_records
from edgeagent.cli import main
from edgeagent.errors import UserError
from trainer.filter import drop_reason, filter_records
from trainer.gold import GOLD_MODEL, GoldError, gold_trajectory


def _gsm8k(shared_data: Path, n: int) -> list[dict[str, Any]]:
    path = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    lines = path.read_text("utf-8").split("\n")
    return [json.loads(line) for line in lines[:n] if line.strip()]


# --------------------------------------------------------------------------- gold


def test_gold_trajectory_of_the_first_gsm8k_question(shared_data: Path) -> None:
    ex = _gsm8k(shared_data, 1)[0]  # Natalia's clips: 48/2=24, 48+24=72
    t = gold_trajectory(ex, task_id="gsm8k_train:0")
    assert t.model == GOLD_MODEL and t.engine == "gold" and t.gold == "72"
    assert t.answer == r"\boxed{72}" and t.dataset == "gsm8k"
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert t.messages[1]["content"].startswith("New task:\nNatalia sold clips")
    assert t.steps[0].code == (
        "# Natalia sold 48/2 = 24 clips in May.\n"
        "clips = 48 / 2\n"
        'print("clips =", clips)\n'
        "# Natalia sold 48+24 = 72 clips altogether in April and May.\n"
        "clips_altogether = 48 + clips\n"
        'print("clips_altogether =", clips_altogether)'
    )
    assert t.messages[3]["content"] == (
        "Call id: call_1\nObservation:\nExecution logs:\nclips = 24.0\n"
        "clips_altogether = 72.0\nLast output from code snippet:\nNone"
    )
    assert t.messages[4]["content"].endswith('final_answer(r"\\boxed{72}")\n```<end_code>')
    assert t.steps[1].final and t.steps[1].final_answer == r"\boxed{72}"
    again = Trajectory.from_dict(json.loads(t.to_json()))
    assert again.messages == t.messages


def test_gold_code_runs_and_prints_its_observation(shared_data: Path) -> None:
    made = 0
    for ex in _gsm8k(shared_data, 60):
        try:
            t = gold_trajectory(ex)
        except GoldError:
            continue
        made += 1
        for step in t.steps:
            action = parse_action(step.text)
            assert action.error is None and action.code == step.code
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(t.steps[0].code or "", {})  # plain arithmetic, made here
        assert t.steps[0].observation == (
            f"Call id: call_1\nObservation:\nExecution logs:\n{out.getvalue()}"
            "Last output from code snippet:\nNone")
    assert made >= 55


def test_gold_refuses_examples_without_annotations() -> None:
    with pytest.raises(GoldError, match="no calculator annotations"):
        gold_trajectory({"question": "q?", "answer": "It is 4.\n#### 4"})
    with pytest.raises(GoldError, match="#### N"):
        gold_trajectory({"question": "q?", "answer": "<<2+2=4>>4"})
    with pytest.raises(GoldError, match="computes"):
        gold_trajectory({"question": "q?", "answer": "<<2+2=5>>5\n#### 5"})


# --------------------------------------------------------------------------- filter


def _variant(t: Trajectory, **changes: Any) -> Trajectory:
    d = json.loads(t.to_json())
    d.update(changes)
    return Trajectory.from_dict(d)


def test_filter_keeps_correct_and_names_every_drop_reason(shared_data: Path) -> None:
    good = gold_trajectory(_gsm8k(shared_data, 1)[0])
    parse_err = _variant(good)
    parse_err.steps[0] = StepRecord(thought="", code=None, observation="Error:\nError in code "
                                    "parsing:\n…", error="Error in code parsing:\n…")
    exec_err = _variant(good)  # an execution error the model recovered from stays
    exec_err.steps.insert(0, StepRecord(thought="t", code="1/0", observation="Call id: call_1\n"
                                        "Error:\nZeroDivisionError", error="ZeroDivisionError"))
    records = [
        good, exec_err, _variant(good, answer="\\boxed{71}"), parse_err,
        _variant(good, from_fallback=True), _variant(good, gold=None),
        _variant(good, cancelled=True), _variant(good, answer=None),
        _variant(good, answer="72.0"),
    ]
    kept, report = filter_records(records)
    assert [t.answer for t in kept] == ["\\boxed{72}", "\\boxed{72}", "72.0"]
    assert kept[1].steps[0].error == "ZeroDivisionError"
    assert all(t.score == 1.0 for t in kept)
    assert report.total == 9 and report.kept == 3
    assert dict(report.dropped) == {"wrong answer": 1, "parse error": 1, "max steps": 1,
                                    "no gold": 1, "cancelled": 1, "no answer": 1}
    text = "\n".join(report.lines())
    assert "kept 3 of 9" in text and "parse error" in text


def test_filter_qa_by_exact_match() -> None:
    t = Trajectory(id="q", question="Who?", model="m", engine="e", prompt_version="v",
                   answer="the Beatles", gold="Beatles", dataset="hotpotqa",
                   messages=[{"role": "system", "content": "s"},
                             {"role": "user", "content": "u"},
                             {"role": "assistant", "content": "a"}])
    assert drop_reason(t) is None
    t.answer = "The Rolling Stones"
    assert drop_reason(t) == "wrong answer"


# --------------------------------------------------------------------------- import


def _log_entry(t: Trajectory, *, as_string: bool, enum_roles: bool) -> dict[str, Any]:
    def role(name: str) -> str:
        return "MessageRole." + name.upper().replace("-", "_") if enum_roles else name

    msgs: list[dict[str, Any]] = [
        {"role": role("system"), "content": [{"type": "text", "text": "TEACHER SYSTEM PROMPT"}]},
        {"role": role("user"), "content": [{"type": "text", "text": t.messages[1]["content"]}]},
    ]
    for k, step in enumerate(t.steps, 1):
        msgs.append({"role": role("assistant"), "content": [{"type": "text", "text": step.text}]})
        call = (f"Calling tools:\n[{{'id': 'call_{k}', 'type': 'function', 'function': "
                f"{{'name': 'python_interpreter', 'arguments': {step.code!r}}}}}]")
        msgs.append({"role": role("tool-call"), "content": [{"type": "text", "text": call}]})
        msgs.append({"role": role("tool-response"),
                     "content": [{"type": "text", "text": step.observation}]})
    log: Any = {"messages": msgs, "original_memory": {"steps": []}}
    return {"model_id": "Qwen/Qwen2.5-32B-Instruct", "question": t.question,
            "generated_answer": t.answer, "true_answer": t.gold,
            "log_data": json.dumps(log) if as_string else log, "cost": 0.0}


def test_import_log_data_round_trips_our_chat(shared_data: Path, tmp_path: Path) -> None:
    from trainer.importer import import_log_data

    golds = [gold_trajectory(ex) for ex in _gsm8k(shared_data, 3)]
    src = tmp_path / "released.jsonl"
    entries = [_log_entry(golds[0], as_string=False, enum_roles=False),
               _log_entry(golds[1], as_string=True, enum_roles=True),
               {"model_id": "x", "question": "failed", "error": "boom", "log_data": None},
               _log_entry(golds[2], as_string=True, enum_roles=False)]
    src.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    records, empty = import_log_data(src, dataset="gsm8k")
    assert empty == 1 and len(records) == 3
    for got, want in zip(records, golds, strict=True):
        assert got.messages == want.messages  # system replaced by the student's, like ours
        assert got.model == "Qwen/Qwen2.5-32B-Instruct" and got.gold == want.gold
        assert [s.code for s in got.steps] == [s.code for s in want.steps]
        assert got.steps[-1].final and got.answer == want.answer
    _, report = filter_records(records)
    assert report.kept == 3
    keep = import_log_data(src, keep_system=True)[0][0]
    assert keep.messages[0]["content"] == "TEACHER SYSTEM PROMPT"

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(entries[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.jsonl:2"):
        import_log_data(bad)


# --------------------------------------------------------------------------- CLI


def test_cli_gold_then_filter(shared_data: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    traj, kept = tmp_path / "traj.jsonl", tmp_path / "kept.jsonl"
    assert main(["distill", "gold", "--data", str(data), "--out", str(traj),
                 "--limit", "40"]) == 0
    out = capsys.readouterr().out
    assert "gold trajectories" in out
    n = len(read_records(traj))
    assert 36 <= n <= 40
    assert main(["distill", "filter", str(traj), "--out", str(kept)]) == 0
    out = capsys.readouterr().out
    assert f"kept {n} of {n} trajectories" in out
    assert len(read_records(kept)) == n


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    assert main(["distill", "filter", str(broken), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.jsonl:1" in err
    assert main(["distill", "filter", str(tmp_path / "missing.jsonl"), "--out", "x"]) == 2
    assert main(["distill", "gold", "--data", str(broken), "--out", str(tmp_path / "g")]) == 2


def test_distill_help_imports_no_torch() -> None:
    code = ("import sys; from edgeagent.cli import build_parser; build_parser(); "
            "import edgeagent.cli.distill; "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'trainer.train') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
