"""Benchmark and data files from `--data-dir`, the user's data dir, or the (stand-in) Hub.

The stand-in dataset repo holds the paper's files copied from `../shared/data`;
downloads go through `huggingface_hub` into a Hugging Face cache under tmp, and
are checked against the sha256 pinned in `edgeagent.eval.datafiles`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_standin import HubStandin

from edgeagent.errors import UserError
from edgeagent.eval import datafiles
from edgeagent.eval.data import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
GSM8K = "benchmarks/test/gsm8k_1319.jsonl"
TRAIN = "benchmarks/train/gsm8k_train_7473.jsonl"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("EDGEAGENT_DATA", raising=False)
    return cache


@pytest.fixture
def data_hub(shared_data: Path, tmp_path: Path) -> Iterator[tuple[HubStandin, Path]]:
    repo = tmp_path / "hub" / "datasets" / datafiles.DATA_REPO
    for rel in (GSM8K, TRAIN, "wiki/multihop_paragraphs.jsonl.gz"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / rel, repo / rel)
    with HubStandin(tmp_path / "hub") as hub:
        yield hub, repo


def test_pinned_checksums_are_the_shared_files(shared_data: Path) -> None:
    from edgeagent.wheelfetch import sha256_file

    for rel, pinned in datafiles.FILES.items():
        path = shared_data / rel
        assert path.stat().st_size == pinned.size, rel
        assert sha256_file(path) == pinned.sha256, rel


def test_data_dir_is_used_offline(shared_data: Path, hf_cache: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may be downloaded
    assert datafiles.locate(GSM8K, shared_data) == shared_data / GSM8K
    bench = load_benchmark("gsm8k", shared_data)
    assert len(bench.examples) == 1319 and bench.path == shared_data / GSM8K
    assert not hf_cache.exists()


def test_user_data_dir_comes_before_the_hub(shared_data: Path, hf_cache: Path,
                                            edgeagent_home: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    mine = datafiles.user_dir() / GSM8K
    mine.parent.mkdir(parents=True)
    shutil.copy(shared_data / GSM8K, mine)
    assert load_benchmark("gsm8k").path == mine


def test_download_once_checked_then_cached(data_hub: tuple[HubStandin, Path], hf_cache: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    hub, _ = data_hub
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    bench = load_benchmark("gsm8k")
    assert len(bench.examples) == 1319 and str(hf_cache) in str(bench.path)
    gets = [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) == 1 and GSM8K in gets[0].path
    hub.stop()  # offline now: the cached copy is used
    assert load_benchmark("gsm8k").path == bench.path


def test_a_changed_file_is_refused(data_hub: tuple[HubStandin, Path], hf_cache: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    hub, repo = data_hub
    (repo / GSM8K).write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    with pytest.raises(UserError, match="not the pinned") as err:
        load_benchmark("gsm8k")
    assert err.value.exit_code == 3


def test_no_data_dir_and_no_hub_is_one_line(hf_cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(UserError) as err:
        load_benchmark("gsm8k")
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert "--data-dir" in str(err.value) or "cannot reach" in str(err.value)


def test_distill_gold_defaults_to_the_gsm8k_train_set(data_hub: tuple[HubStandin, Path],
                                                      tmp_path: Path) -> None:
    hub, _ = data_hub
    env = dict(os.environ, EDGEAGENT_HOME=str(tmp_path / "home"), HF_ENDPOINT=hub.url,
               HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    env.pop("EDGEAGENT_DATA", None)
    out = tmp_path / "gold.jsonl"
    r = subprocess.run([sys.executable, "-m", "edgeagent", "distill", "gold", "--limit", "3",
                        "--out", str(out)], env=env, text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3 and records[0]["model"] == "gold-annotations"


def test_eval_cli_data_dir_flag(tmp_path: Path, edgeagent_home: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.cli import main

    rc = main(["eval", "--bench", "gsm8k", "--out", str(tmp_path / "o"),
               "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and "benchmark file missing" in err and err.count("\n") == 1
    # `eval --data-dir` names the data files, not the app's home (top-level --data-dir)
    assert os.environ["EDGEAGENT_HOME"] == str(edgeagent_home)
