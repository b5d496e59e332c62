"""`edgeagent models pull` against the stand-in Hub (tests/hub_standin.py, via HF_ENDPOINT):
GGUF repos (quant choice, split files), errors (no network, unknown, gated, disk, checksum),
a download killed with SIGKILL resuming, and the catalog. Conversions (safetensors and
adapter repos) are in test_models_pull_convert.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest
from hub_standin import HubStandin

from edgeagent import locations
from edgeagent.cli import main
from edgeagent.models.registry import Registry, resolve

pytest.importorskip("huggingface_hub")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private Hugging Face cache; no token or offline mode from the environment."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return tmp_path / "hf-home" / "hub"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandin]:
    with HubStandin(tmp_path / "hub-root", gated={"org/gated-GGUF"}, token="hf_ok") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def put(hub: HubStandin, repo: str, files: dict[str, bytes | Path]) -> Path:
    """Publish `files` as model repo `repo` on the stand-in (Paths are linked, not copied)."""
    folder = hub.root / "models" / repo
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            dest.symlink_to(content)
        else:
            dest.write_bytes(content)
    return folder


def split_gguf(src: Path, out_dir: Path, stem: str, max_tensors: int) -> list[Path]:
    """`src` rewritten as a llama.cpp split GGUF (`stem-0000k-of-0000n.gguf`)."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out_dir / f"{stem}.gguf", arch, split_max_tensors=max_tensors)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return sorted(out_dir.glob(f"{stem}-*-of-*.gguf"))


def data_files() -> list[str]:
    root = locations.data_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) \
        if root.exists() else []


def one_line(err: str) -> None:
    """The error is one line, the last; lines before it are the stages reached (no TTY)."""
    lines = err.splitlines()
    assert lines and lines[-1].startswith("edgeagent: error:"), err
    assert "Traceback" not in err and sum("error" in line for line in lines) == 1, err


# -- GGUF repos -----------------------------------------------------------------------------
def test_gguf_repo_quant_choice_and_shared_cache(hub: HubStandin, tiny_gguf: Path,
                                                 hf_env: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_gguf.read_bytes()
    put(hub, "org/tiny-GGUF", {"tiny-q8_0.gguf": data, "tiny-Q4_0.gguf": data,
                               "tiny-f16.gguf": data, "README.md": b"# tiny"})
    assert main(["models", "pull", "org/tiny-GGUF"]) == 0
    reg = Registry.load()
    entry = reg.entries["tiny-q4_0"]  # no Q4_K_M: Q4_0 is next
    assert entry.source == "hf:org/tiny-GGUF:tiny-Q4_0.gguf"
    path = Path(entry.path)
    assert path.name == "tiny-Q4_0.gguf" and hf_env in path.parents  # in the HF cache
    assert path.read_bytes() == data and reg.default == "tiny-q4_0"
    assert data_files() == ["models/registry.json"]  # nothing copied into the models dir
    assert main(["models", "pull", "org/tiny-GGUF", "--quant", "q8_0", "--name", "t8"]) == 0
    assert Registry.load().entries["t8"].source.endswith("tiny-q8_0.gguf")
    gets = [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) == 1  # same bytes, same blob: the second pull downloaded nothing
    capsys.readouterr()
    assert main(["models", "pull", "org/tiny-GGUF", "--quant", "Q2_K"]) == 2
    err = capsys.readouterr().err
    one_line(err)
    assert "no Q2_K file" in err and "Q4_0, Q8_0" in err


def test_split_gguf_repo_is_pulled_whole_and_answers(hub: HubStandin, tiny_gguf: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    shards = split_gguf(tiny_gguf, tmp_path, "tiny-q4_k_m", max_tensors=8)
    assert len(shards) >= 2 and shards[0].name.endswith(f"-00001-of-{len(shards):05d}.gguf")
    put(hub, "org/split-GGUF", {s.name: s for s in shards}
        | {"tiny-q8_0.gguf": tiny_gguf.read_bytes()})
    assert main(["models", "pull", "org/split-GGUF"]) == 0
    entry = Registry.load().entries["split-q4_k_m"]
    assert Path(entry.path).name == shards[0].name
    assert entry.size_bytes == sum(s.stat().st_size for s in shards)
    for shard in shards:
        assert (Path(entry.path).parent / shard.name).read_bytes() == shard.read_bytes()

    from edgeagent.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(resolve("split-q4_k_m")[0], n_ctx=256) as engine:  # llama.cpp joins them
        out = engine.generate("Hello", n=1, max_tokens=4, stop=[], temperature=0.0)
    assert len(out) == 1
    # and the whole agent runs on it by its registry name (a random model: no answer needed)
    capsys.readouterr()
    main(["ask", "--model", "split-q4_k_m", "--no-wiki", "--max-steps", "1",
          "--max-tokens", "8", "--n-ctx", "2048", "--json", "What is 2 + 2?"])
    traj = json.loads(capsys.readouterr().out)
    assert traj["model"] == "split-q4_k_m" and len(traj["steps"]) == 1
    assert traj["tokens"]["completion"] > 0


# -- errors ---------------------------------------------------------------------------------
def test_no_network_unknown_and_gated_are_one_line_exit_3(
        hub: HubStandin, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    put(hub, "org/gated-GGUF", {"g-Q4_0.gguf": tiny_gguf.read_bytes()})
    assert main(["models", "pull", "org/none-GGUF"]) == 3
    err = capsys.readouterr().err
    one_line(err)
    assert "no such repo" in err
    assert main(["models", "pull", "org/gated-GGUF"]) == 3
    err = capsys.readouterr().err
    one_line(err)
    assert "gated" in err and "HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    assert main(["models", "pull", "org/gated-GGUF"]) == 0
    assert hub.requests[-1].authorization == "Bearer hf_ok"
    capsys.readouterr()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert main(["models", "pull", "org/gated-GGUF", "--name", "again"]) == 3
    err = capsys.readouterr().err
    one_line(err)
    assert "cannot reach http://127.0.0.1:9" in err and "no network" in err
    assert main(["models", "pull", "no-slash"]) == 2
    assert main(["models", "pull", "org/gated-GGUF:README.md"]) == 2


def test_too_small_a_disk_is_refused_before_downloading(
        hub: HubStandin, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from edgeagent.models import hub as hub_mod

    put(hub, "org/tiny-GGUF", {"tiny-Q4_0.gguf": tiny_gguf.read_bytes()})
    real = shutil.disk_usage
    monkeypatch.setattr(hub_mod.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=tiny_gguf.stat().st_size // 2))
    assert main(["models", "pull", "org/tiny-GGUF"]) == 3
    err = capsys.readouterr().err
    one_line(err)
    assert "not enough disk space" in err
    assert not [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert data_files() == []


def test_a_corrupt_partial_download_is_discarded(hub: HubStandin, tiny_gguf: Path,
                                                 hf_env: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    data = tiny_gguf.read_bytes()
    put(hub, "org/tiny-GGUF", {"tiny-Q4_0.gguf": data})
    sha = hashlib.sha256(data).hexdigest()
    blobs = hf_env / "models--org--tiny-GGUF" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{sha}.edgeagent-partial").write_bytes(b"\0" * 1000)  # wrong bytes, resumed after
    assert main(["models", "pull", "org/tiny-GGUF"]) == 3
    err = capsys.readouterr().err
    one_line(err)
    assert "checksum mismatch" in err
    assert list(blobs.iterdir()) == [] and data_files() == []
    assert main(["models", "pull", "org/tiny-GGUF"]) == 0  # and the next pull starts over


@pytest.mark.slow
def test_a_download_killed_with_sigkill_resumes(hub: HubStandin, default_model: Path,
                                                hf_env: Path) -> None:
    """The real default model (~100 MB) served slowly; the pulling process is SIGKILLed once
    over 20 MB are on disk (huggingface_hub writes 10 MB at a time); the next pull resumes."""
    put(hub, "org/smol-GGUF", {"smol-Q4_1.gguf": default_model})
    hub.delay_per_chunk = 0.004
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent", "models", "pull",
                             "org/smol-GGUF"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    blobs = hf_env / "models--org--smol-GGUF" / "blobs"
    deadline = time.monotonic() + 120
    size = 0
    while time.monotonic() < deadline and proc.poll() is None:
        parts = list(blobs.glob("*.edgeagent-partial")) if blobs.exists() else []
        size = parts[0].stat().st_size if parts else 0
        if size >= 20_000_000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the download finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (part,) = blobs.glob("*.edgeagent-partial")
    kept = part.stat().st_size
    assert kept >= size >= 20_000_000 and kept < default_model.stat().st_size
    assert not (locations.models_dir() / "registry.json").exists()
    hub.delay_per_chunk = 0.0
    assert main(["models", "pull", "org/smol-GGUF"]) == 0
    ranges = [r.range for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert ranges[-1] == f"bytes={kept}-"
    entry = Registry.load().entries["smol-q4_1"]
    assert Path(entry.path).read_bytes() == default_model.read_bytes()
    assert not list(blobs.glob("*.edgeagent-partial"))


# -- catalog --------------------------------------------------------------------------------
def test_catalog_lists_and_pulls_by_name(hub: HubStandin, tiny_gguf: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.models.catalog import load_catalog

    entries = load_catalog()
    names = {e.name for e in entries}
    assert {"agent-distilled-qwen2.5-1.5b", "qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct",
            "smollm2-360m-instruct", "smollm2-1.7b-instruct"} <= names
    students = [e for e in entries if e.kind == "adapter"]
    assert students and all(e.base in names and e.quality.startswith("paper:")
                            for e in students)
    put(hub, "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        {"qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_gguf.read_bytes(),
         "qwen2.5-0.5b-instruct-q8_0.gguf": tiny_gguf.read_bytes()})
    assert main(["models", "pull", "qwen2.5-0.5b-instruct"]) == 0
    entry = Registry.load().entries["qwen2.5-0.5b-instruct"]
    assert entry.source.endswith("q4_k_m.gguf")
    capsys.readouterr()
    assert main(["models", "catalog", "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["qwen2.5-0.5b-instruct"]["pulled"] is True
    assert listed["qwen2.5-7b-instruct"]["pulled"] is False
    assert main(["models", "catalog"]) == 0
    out = capsys.readouterr().out
    assert "agent-distilled-qwen2.5-1.5b" in out and "paper" in out
