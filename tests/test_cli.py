"""The command line as a user meets it: help, version, one-line errors, and a
light import (no torch, no transformers, no llama_cpp for `--help`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent import __version__


def run(*args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEAGENT_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "edgeagent", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from edgeagent.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'llama_cpp', 'tantivy', 'textual', 'peft')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_version_and_help(tmp_path: Path) -> None:
    assert run("--version", env_home=tmp_path).stdout.strip() == f"edgeagent {__version__}"
    helped = run("--help", env_home=tmp_path)
    assert helped.returncode == 0
    for group in ("models", "bench"):
        assert group in helped.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "engine", "--model", "/nonexistent/model.gguf"],
        ["models", "add", "/etc/hostname"],
        ["models", "rm", "nothing-here"],
        ["no-such-command"],
        ["bench", "engine", "--tokens", "many"],
    ],
)
def test_bad_input_is_one_line_without_traceback(args: list[str], tmp_path: Path) -> None:
    out = run(*args, env_home=tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("edgeagent: error:")


def test_truncated_and_alien_gguf_through_the_cli(tmp_path: Path, tiny_gguf: Path) -> None:
    from tiny_gguf import write_tiny_gguf

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:4_000_000])
    alien = write_tiny_gguf(tiny_gguf, tmp_path / "alien.gguf", architecture="mamba9")
    cases = ((cut, "not within the file bounds"), (alien, "unknown model architecture"))
    for path, reason in cases:
        out = run("bench", "engine", "--model", str(path), "--repeat", "1", env_home=tmp_path)
        assert out.returncode == 2
        assert reason in out.stderr and out.stderr.count("\n") == 1, out.stderr


@pytest.mark.slow
def test_bench_engine_json_keys(tmp_path: Path, tiny_gguf: Path) -> None:
    out = run("bench", "engine", "--model", str(tiny_gguf), "--json", "--repeat", "1",
              "--tokens", "16", env_home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in ("model", "quant", "raw_tok_s", "engine_tok_s", "engine_vs_raw", "single_s",
                "batched8_s", "sequential8_s", "batched8_vs_single", "prefix_new_tokens",
                "prefix_evaluated_tokens"):
        assert key in data
    assert data["prefix_new_tokens"] == data["prefix_evaluated_tokens"] > 0
    assert data["raw_vs_engine_greedy_tokens"] == [16, 16]
