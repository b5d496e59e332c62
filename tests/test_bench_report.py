"""The one JSON shape of `edgeagent bench …`, and `bench ask` / `bench sag` end to end
on the tiny random GGUF (real engine, real sandbox, real benchmark file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeagent.bench.report import make_report, percentile, shape

REPO = Path(__file__).resolve().parents[1]


def test_make_report_puts_the_head_first() -> None:
    r = make_report("x", model="m", baseline="b", ratio={"a_vs_b": 2.0}, speed=3, unit="s")
    assert list(r) == ["name", "model", "baseline", "ratio", "speed", "unit"]


def test_shape_fills_the_head_of_a_bare_result() -> None:
    bare = {"call_p50_ms": 3.0, "fanout8_vs_fresh8_ratio": 0.1, "x_vs_y": 2, "flag": True,
            "name_like": "n"}
    r = shape("sandbox", bare)
    assert list(r)[:4] == ["name", "model", "baseline", "ratio"]
    assert r["name"] == "sandbox" and r["model"] is None and r["baseline"] == ""
    assert r["ratio"] == {"fanout8_vs_fresh8_ratio": 0.1, "x_vs_y": 2}
    assert r["call_p50_ms"] == 3.0
    full = make_report("engine", model="m", baseline="b", ratio={"k": 1.0}, v=1)
    assert shape("engine", full) == full


def test_percentile() -> None:
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEAGENT_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edgeagent", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_model_flag_only_where_a_model_is_used(tmp_path: Path) -> None:
    out = _cli("bench", "sandbox", "--model", "x", home=tmp_path)
    assert out.returncode == 2 and "unrecognized arguments: --model" in out.stderr
    bad = _cli("bench", "ask", "--votes", "one", "--model", "/nowhere.gguf", home=tmp_path)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1, bad.stderr


@pytest.mark.slow
def test_bench_ask_reports_both_policies(tmp_path: Path, tiny_gguf: Path,
                                         shared_data: Path) -> None:
    out = _cli("bench", "ask", "--model", str(tiny_gguf), "--bench", "gsm8k", "--limit", "2",
               "--votes", "1,3", "--max-steps", "1", "--max-tokens", "8", "--json",
               "--data-dir", str(shared_data), home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["name"] == "ask" and data["model"] == "tiny-random" and data["questions"] == 2
    assert set(data["settings"]) == {"votes1", "votes3", "votes3_wait"}
    assert set(data["ratio"]) == {"votes3_vs_votes1", "votes3_wait_vs_votes1"}
    for s in data["settings"].values():
        assert s["n"] == 2 and 0.0 <= s["accuracy"] <= 1.0
        assert s["wall_p90_s"] >= s["wall_p50_s"] > 0
        assert abs(sum(s["share"].values()) - 1.0) < 0.01
    assert "question 2/2 votes3_wait" in out.stderr  # progress on stderr


@pytest.mark.slow
def test_bench_sag_prefix_reuse_is_exact(tmp_path: Path, tiny_gguf: Path) -> None:
    out = _cli("bench", "sag", "--model", str(tiny_gguf), "--max-tokens", "16", "--json",
               home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["name"] == "sag" and "sag8_vs_greedy" in data["ratio"]
    assert data["prompt_tokens_evaluated_per_step"] == data["prompt_tokens_new_per_step"]
    assert data["prompt_tokens_new_per_step"][0] > 300  # step 1: the whole system prompt
    assert all(0 <= n <= 8 for n in data["sag8_cut_per_step"])
    assert "sag8_unshared_vs_greedy" in data["ratio"]
    assert len(data["sag8_rows_per_sample_token"]) == 3
    assert all(0 < r <= 1 for r in data["sag8_rows_per_sample_token"])


@pytest.mark.slow
def test_bench_serve_reports_clients_against_one(tmp_path: Path, default_model: Path) -> None:
    out = _cli("bench", "serve", "--model", str(default_model), "--clients", "1,2",
               "--requests", "2", "--max-steps", "1", "--max-tokens", "8", "--engines",
               "batched", "--threads", "1", "--repeat", "2", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["name"] == "serve" and data["model"] == default_model.stem
    assert set(data["ratio"]) == {"batched_2clients_vs_1"} and data["ratio"][
        "batched_2clients_vs_1"] == data["batched"]["2"]["throughput_vs_1"] > 0
    # two rounds: the ratio is the median of each round's own ratio
    one, two = (data["batched"][c]["requests_per_min_rounds"] for c in ("1", "2"))
    assert len(one) == len(two) == 2 and one[0] == data["batched"]["1"]["requests_per_min"]
    per_round = data["batched"]["2"]["throughput_vs_1_rounds"]
    assert per_round == [round(b / a, 2) for a, b in zip(one, two, strict=True)]
    assert data["ratio"]["batched_2clients_vs_1"] == pytest.approx(
        sum(per_round) / 2, abs=0.011)
    for run in data["batched"].values():
        assert run["errors"] == [] and run["requests"] == 2 and all(run["answers"])
        # the requests' own cost, from their trajectories: the system prompt is kept
        # (so prefill is their own turns) and every request generated tokens
        assert run["completion_tokens"] >= 2 and run["prompt_tokens_evaluated"] > 0
        assert 0 <= run["from_fallback"] <= 2
        spent = run["request_seconds"]
        assert 0 < spent["generate_s"] <= run["wall_s"] * run["clients"]
        assert spent["fallback_s"] <= spent["generate_s"]
        sched = run["scheduler"]  # the batched host's own account of the same run
        assert sched["decodes"] >= 1 and sched["decode_rows"] >= run["completion_tokens"] // 2
        assert sched["prefill_tokens"] == run["prompt_tokens_evaluated"]
        assert 0 < sched["decode_s"] <= run["wall_s"]
        # its decode seconds split between prompt-carrying calls and rows-only calls
        assert sched["prompt_calls_s"] + sched["row_calls_s"] == pytest.approx(
            sched["decode_s"], abs=0.02)
        assert 0 < sched["row_calls_rows"] <= sched["decode_rows"]
        assert sched["prompt_tokens_per_s"] == pytest.approx(
            sched["prefill_tokens"] / sched["prompt_calls_s"], rel=0.05)
        assert sched["ms_per_row"] > 0
