"""Interrupt and resume: a run killed with SIGKILL mid-way, then started again, finishes
without redoing a finished question or writing any id twice. Fast (a slow fake engine
in a subprocess, no model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proc_support import restore_sigint
from test_eval_support import write_bench

from edgeagent.agent.trajectory import read_records

SCRIPT = """
import sys, json
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_eval_support import AnswerEngine
from edgeagent.eval.data import load_benchmark
from edgeagent.eval.runner import EvalConfig, run_eval

answers = json.loads(Path({answers!r}).read_text())
run_eval([load_benchmark({bench!r})], Path({out!r}), EvalConfig(mode="cot"),
         make_engine=lambda: AnswerEngine(answers, agent=False, delay={delay},
                                          log=Path({log!r})),
         workers=2, progress=False)
"""


def _start(tmp: Path, bench: Path, out: Path, log: Path, delay: float) -> subprocess.Popen[bytes]:
    answers = tmp / "answers.json"
    script = SCRIPT.format(tests=str(Path(__file__).parent), answers=str(answers),
                           bench=str(bench), out=str(out), log=str(log), delay=delay)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ),
                            preexec_fn=restore_sigint)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _bench(tmp: Path, rows: list[dict[str, str]]) -> Path:
    """The benchmark file, and the answer table `_start`'s fake engine reads."""
    (tmp / "answers.json").write_text(json.dumps({r["question"]: r["answer"] for r in rows}))
    return write_bench(tmp / "gsm_hard_tiny.json", rows)


def test_sigkill_then_resume(tmp_path: Path) -> None:
    n = 12
    rows = [{"id": f"x{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}
            for i in range(n)]
    bench = _bench(tmp_path, rows)
    out, log1, log2 = tmp_path / "out", tmp_path / "asked1.jsonl", tmp_path / "asked2.jsonl"
    traj_file = out / "gsm_hard_tiny.jsonl"

    proc = _start(tmp_path, bench, out, log1, delay=0.4)
    deadline = time.monotonic() + 60
    while _lines(traj_file) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before = {r.id for r in read_records(traj_file)}
    assert 3 <= len(done_before) < n

    proc = _start(tmp_path, bench, out, log2, delay=0.0)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()

    ids = [r.id for r in read_records(traj_file)]
    assert sorted(ids) == sorted(r["id"] for r in rows)  # every id exactly once
    asked_again = {json.loads(x) for x in log2.read_text().splitlines()}
    questions_done = {r["question"] for r in rows if r["id"] in done_before}
    assert not asked_again & questions_done  # nothing finished was redone
    assert len(asked_again) == n - len(done_before)
    summary = json.loads((out / "summary.json").read_text())
    b = summary["benchmarks"]["gsm_hard_tiny"]
    assert summary["complete"] and b["n"] == b["total"] == n and b["accuracy"] == 1.0


def test_ctrl_c_writes_a_partial_summary_then_resume(tmp_path: Path) -> None:
    """Ctrl+C (SIGINT) stops the run with summary.json for what finished, so a
    partial run can be compared; starting it again completes it."""
    n = 10
    rows = [{"id": f"y{i}", "question": f"What is {i} * 3?", "answer": str(3 * i)}
            for i in range(n)]
    bench = _bench(tmp_path, rows)
    out = tmp_path / "out"
    traj_file = out / "gsm_hard_tiny.jsonl"
    proc = _start(tmp_path, bench, out, tmp_path / "asked1.jsonl", delay=0.4)
    deadline = time.monotonic() + 60
    while _lines(traj_file) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    summary = json.loads((out / "summary.json").read_text())
    b = summary["benchmarks"]["gsm_hard_tiny"]
    assert summary["complete"] is False and b["total"] == n
    assert b["n"] == len(read_records(traj_file)) and 2 <= b["n"] < n
    assert b["accuracy"] == 1.0

    proc = _start(tmp_path, bench, out, tmp_path / "asked2.jsonl", delay=0.0)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert sorted(r.id for r in read_records(traj_file)) == sorted(r["id"] for r in rows)
    assert json.loads((out / "summary.json").read_text())["complete"] is True
