"""`edgeagent ask`: argument errors in-process (fast); real runs through a
subprocess with the default model (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent.cli import main


def test_ask_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ask", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--votes", "--wiki", "--no-wiki", "--max-steps", "--temperature", "--json"):
        assert flag in out


@pytest.mark.parametrize("argv, message", [
    (["ask", "q", "--votes", "0"], "--votes must be at least 1"),
    (["ask", "q", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["ask", "  "], "the question is empty"),
    (["ask", "q", "--model", "/nonexistent/model.gguf"], "model"),
])
def test_ask_bad_input_is_one_line(argv: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeagent: error:") and message in err and err.count("\n") == 1


def _ask(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeagent", "ask", *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_ask_json_end_to_end(default_model: Path) -> None:
    proc = _ask("What is 6 times 7?", "--model", str(default_model), "--no-wiki",
                "--max-steps", "2", "--max-tokens", "128", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["question"] == "What is 6 times 7?" and record["answer"]
    assert record["prompt_version"] and record["messages"][0]["role"] == "system"
    assert record["steps"] and record["model"] == default_model.stem  # unregistered: the file


@pytest.mark.slow
def test_ask_plain_prints_only_the_answer(default_model: Path) -> None:
    proc = _ask("What is 6 times 7?", "--model", str(default_model), "--no-wiki",
                "--max-steps", "1", "--max-tokens", "96", "--votes", "2", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "Step 1" not in proc.stdout and "Thought" not in proc.stderr
