"""The harness end to end with the real default model (slow): 3 questions each of
GSM8K and HotpotQA through `edgeagent eval`, in agent mode (with a wiki index of
the multihop paragraphs) and in cot mode, then `eval compare`. Scores of a 135M
model are not checked, only that the harness is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeagent.agent.trajectory import read_records
from edgeagent.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)
def test_real_model_agent_and_cot(default_model: Path, shared_data: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.wiki.build import build_from_file

    # a small index from the shared paragraphs (the CLI would build all 23k once)
    build_from_file("mini", shared_data / "wiki" / "multihop_paragraphs.jsonl.gz",
                    split=False, limit=3000)
    common = ["--bench", "gsm8k,hotpotqa", "--limit", "3", "--model", str(default_model),
              "--data-root", str(shared_data), "--max-tokens", "160", "--threads", "1"]
    runs = {"agent": [*common, "--mode", "agent", "--wiki", "mini", "--max-steps", "2"],
            "cot": [*common, "--mode", "cot"]}
    for name, argv in runs.items():
        out = tmp_path / name
        assert main(["eval", *argv, "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["complete"] and summary["run"]["mode"] == name
        for bench, kind in (("gsm8k", "math"), ("hotpotqa", "qa")):
            b = summary["benchmarks"][bench]
            assert b["kind"] == kind and b["n"] == b["total"] == 3
            assert 0.0 <= b["score"] <= 1.0
            assert b["completion_tokens_per_question"] > 0 and b["seconds_per_question"] > 0
            recs = read_records(out / f"{bench}.jsonl")
            assert len({r.id for r in recs}) == len(recs) == 3
            assert all(r.model == default_model.name and r.engine == "LlamaCppEngine"
                       for r in recs)
            if name == "cot":
                assert all(len(r.steps) == 1 and r.steps[0].code is None for r in recs)
            else:
                assert all(1 <= len(r.steps) <= 2 for r in recs)
        # a finished run started again does nothing and keeps its records
        before = (out / "gsm8k.jsonl").read_bytes()
        assert main(["eval", *argv, "--out", str(out)]) == 0
        assert (out / "gsm8k.jsonl").read_bytes() == before
    capsys.readouterr()
    png = tmp_path / "cmp.png"
    assert main(["eval", "compare", str(tmp_path / "agent"), str(tmp_path / "cot"),
                 "--png", str(png)]) == 0
    assert "agent · votes 1" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
