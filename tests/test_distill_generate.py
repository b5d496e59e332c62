"""`distill generate` / `distill run` against a scripted OpenAI-compatible server (fast).

The fake teacher answers like a tidy agent: a CoT request (the paper's CoT
system prompt) gets two paragraphs, an agent step gets one Thought/Code turn
ending in `final_answer(5)`, and a prefilled request (`/completions` with a
client-side template, or `continue_final_message`) gets the rest of the turn.
Real models are in `test_distill_generate_real.py`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from proc_support import restore_sigint

from edgeagent.agent.prompts import load_prompts
from edgeagent.cli import main
from trainer.ftp import first_paragraph, load_cot_prompt, prefix_from_reply

ROOT = Path(__file__).resolve().parents[1]
COT_REPLY = "I add 2 and 3 to get 5.\n\nSo the answer is <answer>\\boxed{5}</answer>"
PREFIX = "Thought: I add 2 and 3 to get 5.\n\n"
STEP = "Thought: I will compute it.\nCode:\n```py\nprint(2 + 3)\nfinal_answer(5)\n```<end_code>"
CONTINUATION = "Code:\n```py\nfinal_answer(5)\n```<end_code>"


class Teacher:
    """What the fake server did: requests seen, concurrency, and how to misbehave."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.delay_s = 0.0
        self.inflight = 0
        self.max_inflight = 0
        self.fail_after: int | None = None  # agent requests answered before 503s
        self.lock = threading.Lock()

    def agent_requests(self) -> int:
        return sum(1 for _, body in self.requests if body.get("max_tokens", 0) > 1)

    def reply(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/completions":
            return 200, {"choices": [{"index": 0, "text": CONTINUATION, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
        messages = body["messages"]
        if messages[0]["content"].startswith("You are an expert assistant who can answer"):
            text = COT_REPLY
        elif body.get("continue_final_message"):
            text = CONTINUATION
        elif messages[-1]["content"] == "Say OK.":
            text = "OK"
        else:
            text = STEP
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5}}


@pytest.fixture
def teacher() -> Iterator[tuple[str, Teacher]]:
    state = Teacher()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/v1/models":
                self._send(200, {"data": [{"id": "fake-teacher"}]})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append((self.path, body))
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
                dead = state.fail_after is not None and state.agent_requests() > state.fail_after
            try:
                time.sleep(state.delay_s)
                if dead:
                    self._send(503, {"error": {"message": "overloaded"}})
                else:
                    self._send(*state.reply(self.path, body))
            finally:
                with state.lock:
                    state.inflight -= 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _data(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "toy_train_10.jsonl"
    lines = [json.dumps({"question": f"Question {i}: what is 2 + 3?",
                         "answer": "2+3=<<2+3=5>>5\n#### 5"}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _generate(*args: str) -> int:
    return main(["distill", "generate", "--no-wiki", "--retries", "0", *args])


# -- the first-thought prefix ----------------------------------------------------


def test_prefix_follows_the_reference_formula() -> None:
    reply = "First, find the total.\n\nThen divide.\n\n<answer>\\boxed{3}</answer>"
    # reference: "Thought: " + response.split("\n\n")[0] + "\n\n"
    assert prefix_from_reply(reply) == "Thought: " + reply.split("\n\n")[0] + "\n\n"
    assert first_paragraph("\n\n  Leading blank.\n\nRest") == "Leading blank."
    assert first_paragraph("It is 4. <answer>4</answer>") == "It is 4."
    assert first_paragraph("Thought: already labelled") == "already labelled"
    assert prefix_from_reply("<answer>4</answer>") is None
    assert prefix_from_reply("   ") is None


def test_cot_prompt_is_the_papers() -> None:
    prompt = load_cot_prompt()
    assert prompt.system.startswith("You are an expert assistant who can answer the given")
    assert "<answer> </answer>" in prompt.system and "\\boxed{}" in prompt.system
    assert prompt.system.endswith("Now, please answer the following question: ")


# -- generate against the fake teacher --------------------------------------------


def test_generate_writes_one_teacher_trajectory_per_question(
    teacher: tuple[str, Teacher], tmp_path: Path
) -> None:
    url, state = teacher
    out = tmp_path / "traj.jsonl"
    assert _generate("--teacher", url, "--data", str(_data(tmp_path, 3)), "--out", str(out)) == 0
    recs = _records(out)
    assert [r["id"] for r in recs] == ["toy_train_10:0", "toy_train_10:1", "toy_train_10:2"]
    for r in recs:
        assert r["model"] == "fake-teacher" and r["engine"] == "OpenAIEngine"
        assert r["answer"] == "5" and r["gold"] == "5" and r["dataset"] == "toy"
        assert "ftp_prefix" not in r
        assert r["messages"][2] == {"role": "assistant", "content": STEP}
        assert r["steps"][0]["final"] and "5" in r["steps"][0]["observation"]
    # the long teacher prompt, greedy
    agent_bodies = [b for p, b in state.requests if b.get("max_tokens", 0) > 1]
    assert all(b["temperature"] == 0.0 for b in agent_bodies)
    assert agent_bodies[0]["messages"][0]["content"] == load_prompts().system("teacher")
    # rerun: nothing left to do
    assert _generate("--teacher", url, "--data", str(_data(tmp_path, 3)), "--out", str(out)) == 0
    assert len(_records(out)) == 3


@pytest.mark.parametrize("template", [True, False], ids=["completions", "continue_final"])
def test_ftp_prefix_starts_the_first_assistant_turn(
    teacher: tuple[str, Teacher], tmp_path: Path, template: bool
) -> None:
    url, state = teacher
    out = tmp_path / "traj.jsonl"
    args = ["--teacher", url, "--data", str(_data(tmp_path, 2)), "--out", str(out), "--ftp"]
    if template:
        chatml = tmp_path / "chatml.jinja"
        chatml.write_text("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                          "<|im_start|>assistant\n{% endif %}")
        args += ["--chat-template", str(chatml)]
    assert _generate(*args) == 0
    recs = _records(out)
    assert len(recs) == 2
    for r in recs:
        assert r["ftp_prefix"] == PREFIX
        first = next(m for m in r["messages"] if m["role"] == "assistant")
        assert first["content"] == PREFIX + CONTINUATION  # the prefix, then the teacher's rest
        assert r["steps"][0]["thought"].startswith("I add 2 and 3 to get 5.")
        assert r["answer"] == "5"
    cot = [b for p, b in state.requests if p == "/v1/chat/completions"
           and b["messages"][0]["content"] == load_cot_prompt().system]
    assert len(cot) == 2 and cot[0]["messages"][1]["content"] == "Question 0: what is 2 + 3?"
    assert cot[0]["stop"] == ["\n\n"] and cot[0]["temperature"] == 0.0
    if template:
        prompts = [b["prompt"] for p, b in state.requests if p == "/v1/completions"]
        assert len(prompts) == 2 and all(p.endswith("<|im_start|>assistant\n" + PREFIX)
                                         for p in prompts)
    else:
        prefilled = [b for _, b in state.requests if b.get("continue_final_message")]
        assert len(prefilled) == 2
        assert prefilled[0]["messages"][-1] == {"role": "assistant", "content": PREFIX}


def test_workers_send_requests_in_parallel(teacher: tuple[str, Teacher], tmp_path: Path) -> None:
    url, state = teacher
    state.delay_s = 0.3
    out = tmp_path / "traj.jsonl"
    assert _generate("--teacher", url, "--data", str(_data(tmp_path, 4)), "--out", str(out),
                     "--workers", "2") == 0
    ids = sorted(r["id"] for r in _records(out))
    assert ids == [f"toy_train_10:{i}" for i in range(4)]
    assert state.max_inflight == 2


def test_teacher_dying_midway_keeps_finished_records(
    teacher: tuple[str, Teacher], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = teacher
    state.fail_after = 2  # two questions answered, then 503s
    out = tmp_path / "traj.jsonl"
    data = _data(tmp_path, 5)
    assert _generate("--teacher", url, "--data", str(data), "--out", str(out)) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "teacher stopped answering" in err and "rerun to resume" in err
    recs = _records(out)
    assert [r["id"] for r in recs] == ["toy_train_10:0", "toy_train_10:1"]
    assert all("error" not in r for r in recs)
    state.fail_after = None
    assert _generate("--teacher", url, "--data", str(data), "--out", str(out)) == 0
    assert [r["id"] for r in _records(out)] == [f"toy_train_10:{i}" for i in range(5)]


def test_resume_after_sigkill(teacher: tuple[str, Teacher], tmp_path: Path) -> None:
    url, state = teacher
    state.delay_s = 0.15
    data, out = _data(tmp_path, 8), tmp_path / "traj.jsonl"
    cmd = [sys.executable, "-m", "edgeagent", "distill", "generate", "--teacher", url,
           "--data", str(data), "--out", str(out), "--no-wiki"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(_records(out)) < 3):
            time.sleep(0.05)
        assert out.exists() and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = len(_records(out))
    assert 3 <= killed_at < 8
    with open(out, "a") as fh:  # and a record half-written at the kill
        fh.write('{"id": "toy_train_10:7", "question": "Quest')
    state.delay_s = 0.0
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{killed_at} of 8 were already done" in done.stdout
    ids = [r["id"] for r in _records(out)]
    assert sorted(ids) == sorted(f"toy_train_10:{i}" for i in range(8))
    assert len(ids) == len(set(ids)) == 8


def test_ctrl_c_keeps_whole_records_only(teacher: tuple[str, Teacher], tmp_path: Path) -> None:
    url, state = teacher
    state.delay_s = 0.2
    data, out = _data(tmp_path, 8), tmp_path / "traj.jsonl"
    cmd = [sys.executable, "-m", "edgeagent", "distill", "generate", "--teacher", url,
           "--data", str(data), "--out", str(out), "--no-wiki", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=restore_sigint)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(_records(out)) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    recs = _records(out)
    assert 2 <= len(recs) < 8 and all(not r.get("cancelled") and r["answer"] == "5" for r in recs)
    assert len({r["id"] for r in recs}) == len(recs)


# -- gold and bad input ------------------------------------------------------------


def test_gold_teacher_on_gsm8k_lines(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    data = tmp_path / "gsm8k_train_7473.jsonl"
    with open(src) as fh:
        data.write_text("".join(next(fh) for _ in range(6)))
    out = tmp_path / "gold.jsonl"
    assert _generate("--teacher", "gold", "--data", str(data), "--out", str(out),
                     "--limit", "4") == 0
    assert _generate("--teacher", "gold", "--data", str(data), "--out", str(out)) == 0
    recs = _records(out)
    assert [r["id"] for r in recs] == [f"gsm8k_train_7473:{i}" for i in range(6)]
    assert {r["model"] for r in recs} == {"gold-annotations"}
    assert {r["dataset"] for r in recs} == {"gsm8k"}
    assert recs[0]["gold"] == "72" and recs[0]["answer"] == "\\boxed{72}"
    assert main(["distill", "filter", str(out), "--out", str(tmp_path / "kept.jsonl")]) == 0
    assert len(_records(tmp_path / "kept.jsonl")) == 6


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeagent: error:") and "\n" not in err, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_bad_inputs_are_one_line_errors(
    teacher: tuple[str, Teacher], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = teacher
    out = tmp_path / "traj.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    data = _data(tmp_path, 2)
    _one_line_error(capsys, _generate("--teacher", dead, "--data", str(data), "--out", str(out)),
                    "cannot reach")
    assert not out.exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(empty), "--out", str(out)),
                    "empty")
    no_examples = tmp_path / "none.json"
    no_examples.write_text(json.dumps({"metadata": {}, "examples": []}))
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(no_examples),
                                      "--out", str(out)), "no examples")
    truncated = tmp_path / "cut.jsonl"
    truncated.write_text(data.read_text() + '{"question": "What is')
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(truncated),
                                      "--out", str(out)), "cut.jsonl:3", "truncated")
    cut_json = tmp_path / "cut.json"
    cut_json.write_text(json.dumps({"examples": [{"question": "q", "answer": "a"}]}, indent=1)[:-9])
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(cut_json),
                                      "--out", str(out)), "not valid JSON", "truncated")
    _one_line_error(capsys, _generate("--teacher", "gpt-4", "--data", str(data),
                                      "--out", str(out)), "--teacher must be")
    _one_line_error(capsys, _generate("--teacher", "gold", "--ftp", "--data", str(data),
                                      "--out", str(out)), "--ftp")
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(tmp_path / "nope.json"),
                                      "--out", str(out)), "no such data file")
    qa = tmp_path / "qa_5.json"
    qa.write_text(json.dumps({"examples": [{"id": 1, "question": "Who?", "answer": "Me"}]}))
    _one_line_error(capsys, _generate("--teacher", "gold", "--data", str(qa), "--out", str(out)),
                    "no gold trajectories")
    _one_line_error(capsys, _generate("--teacher", url, "--data", str(data), "--out", str(out),
                                      "--chat-template", str(tmp_path / "missing.jinja")),
                    "chat template")
    assert not out.exists()


# -- distill run -------------------------------------------------------------------


def test_run_plans_and_skips_finished_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path, 3)
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'out = "run"\n[generate]\nteacher = "gold"\ndata = "{data.name}"\n'
                   '[train]\nmodel = "missing-base-dir"\nepochs = 1\n'
                   '[convert]\nquantize = "Q4_0"\n')
    assert main(["distill", "run", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[1/6] generate: edgeagent distill generate --teacher gold --data " \
        f"{data.resolve()} --out {tmp_path / 'run' / 'traj.jsonl'}" in out
    assert "distill train --model missing-base-dir --epochs 1 --data" in out
    assert "convert quantize" in out and "model.Q4_0.gguf" in out
    # generate and filter run; train fails on the missing base and stops the pipeline
    code = main(["distill", "run", str(cfg)])
    assert code != 0
    assert len(_records(tmp_path / "run" / "kept.jsonl")) == 3
    capsys.readouterr()
    main(["distill", "run", str(cfg)])
    out = capsys.readouterr().out
    assert "filter: done" in out and "wrote 0 trajectories" in out


def test_run_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text('[generate]\nteacher = "gold"\n')
    _one_line_error(capsys, main(["distill", "run", str(cfg)]), "needs data")
    cfg.write_text('[generat]\nteacher = "gold"\n')
    _one_line_error(capsys, main(["distill", "run", str(cfg)]), "unknown key")
    _one_line_error(capsys, main(["distill", "run", str(tmp_path / "no.toml")]), "no such config")
