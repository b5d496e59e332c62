"""`distill generate` with a real teacher: llama-cpp-python's own `llama_cpp.server`
serving the default model (SmolLM2-135M) on loopback (slow).

The teacher prompt is ~2,400 tokens; the server runs with its RAM prompt cache
so that only the first agent request pays for it (the --ftp chain-of-thought
requests use another system prompt, which would otherwise evict it). Steps are
kept short: this checks the plumbing, not the toy model's arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeagent.cli import main

pytestmark = pytest.mark.slow



@pytest.fixture
def gsm8k(shared_data: Path, tmp_path: Path) -> Path:
    src = shared_data / "benchmarks" / "test" / "gsm8k_1319.jsonl"
    dest = tmp_path / "gsm8k_1319.jsonl"
    with open(src) as fh:
        dest.write_text("".join(next(fh) for _ in range(3)))
    return dest


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _generate(url: str, data: Path, out: Path, *args: str) -> int:
    return main(["distill", "generate", "--teacher", url, "--data", str(data), "--out", str(out),
                 "--no-wiki", "--limit", "2", "--max-steps", "1", "--max-tokens", "48",
                 "--model-name", "smollm2-135m", *args])


def test_real_teacher_two_workers(llama_server: str, gsm8k: Path, tmp_path: Path) -> None:
    out = tmp_path / "traj.jsonl"
    assert _generate(llama_server, gsm8k, out, "--workers", "2") == 0
    recs = _records(out)
    assert sorted(r["id"] for r in recs) == ["gsm8k_1319:0", "gsm8k_1319:1"]
    for r in recs:
        assert r["model"] == "smollm2-135m" and r["engine"] == "OpenAIEngine"
        assert r["dataset"] == "gsm8k" and r["gold"] in ("18", "3")
        assert "error" not in r and "ftp_prefix" not in r
        assert [m["role"] for m in r["messages"]][:3] == ["system", "user", "assistant"]
        assert r["messages"][2]["content"].strip() and len(r["steps"]) == 1


def test_real_teacher_first_thought_prefix(
    llama_server: str, gsm8k: Path, default_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ftp.jsonl"
    assert _generate(llama_server, gsm8k, out, "--ftp", "--chat-template", str(default_model),
                     "--cot-max-tokens", "96") == 0
    recs = _records(out)
    assert [r["id"] for r in recs] == ["gsm8k_1319:0", "gsm8k_1319:1"]
    for r in recs:
        prefix = r["ftp_prefix"]
        assert prefix.startswith("Thought: ") and prefix.endswith("\n\n") and len(prefix) > 12
        assert "\n\n" not in prefix[:-2]
        first = r["messages"][2]
        assert first["role"] == "assistant" and first["content"].startswith(prefix.rstrip())
        step = r["steps"][0]["text"]
        assert step.startswith(prefix)
        continuation = step[len(prefix):]
        assert continuation.strip(), "the teacher wrote nothing after the prefix"
        # a continuation of the same turn, not a new assistant turn echoing the prompt
        assert "<|im_start|>" not in continuation and not continuation.startswith(prefix)
