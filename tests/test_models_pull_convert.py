"""`edgeagent models pull` of repos that need converting, from the stand-in Hub: a tiny random
qwen2 safetensors repo (convert, quantize, verify, register) and PEFT LoRA adapter repos on it
(`adapter_model.safetensors` and `adapter_model.bin`; base + adapter as one model; --merge),
each then answering `edgeagent ask --model NAME`. The tiny models come from test_convert.py
and test_convert_lora.py (torch, transformers, peft: the train extra)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hub_standin import HubStandin
from test_convert import smollm2_gguf, tiny_llama, tiny_qwen2, tokenizer_files  # noqa: F401
from test_convert_lora import lora_pair  # noqa: F401
from test_models_pull import hf_env, hub, put  # noqa: F401

from edgeagent import locations
from edgeagent.cli import main
from edgeagent.models.registry import Registry, resolve

pytest.importorskip("huggingface_hub")
pytest.importorskip("llama_cpp")


@pytest.fixture
def qwen2_repo(hub: HubStandin, tiny_qwen2: Path) -> str:  # noqa: F811
    files: dict[str, bytes | Path] = {f.name: f for f in tiny_qwen2.iterdir() if f.is_file()}
    config = json.loads((tiny_qwen2 / "config.json").read_text())
    config["max_position_embeddings"] = 4096  # room for the agent's prompt (random weights)
    files["config.json"] = json.dumps(config).encode()
    put(hub, "org/tiny-qwen2", files)
    return "org/tiny-qwen2"


@pytest.fixture
def adapter_repos(hub: HubStandin, lora_pair: Any, tmp_path: Path,  # noqa: F811
                  qwen2_repo: str) -> Iterator[dict[str, str]]:
    """The same LoRA published twice: with safetensors, and as torch.save's adapter_model.bin."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    adapter, _merged = lora_pair("qwen2")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = qwen2_repo  # as the Hub repo names it
    cfg = json.dumps(config).encode()
    put(hub, "org/student-st", {"adapter_config.json": cfg,
                                "adapter_model.safetensors": adapter / "adapter_model.safetensors",
                                "README.md": b"# student"})
    bin_file = tmp_path / "adapter_model.bin"
    torch.save(load_file(adapter / "adapter_model.safetensors"), bin_file)
    put(hub, "org/student-bin", {"adapter_config.json": cfg, "adapter_model.bin": bin_file})
    yield {"safetensors": "org/student-st", "bin": "org/student-bin"}


def ask(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`edgeagent ask --model NAME --json`: the trajectory."""
    capsys.readouterr()
    code = main(["ask", "What is 6 times 7?", "--model", name, "--json", "--no-wiki",
                 "--max-steps", "1", "--max-tokens", "24", "--n-ctx", "2048", "--seed", "1"])
    out = capsys.readouterr()
    assert code in (0, 1), out.err  # a random model rarely gives an answer
    traj: dict[str, Any] = json.loads(out.out)
    assert "error" not in traj, traj["error"]  # it ran: the model answered or gave up
    return traj


def tensors(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


@pytest.mark.slow
def test_safetensors_repo_is_converted_quantized_verified_and_answers(
        qwen2_repo: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", qwen2_repo]) == 0
    err = capsys.readouterr().err
    for stage in ("download", "convert", "quantize", "verify", "register"):
        assert f"{stage}:" in err  # one line per stage when stderr is not a terminal
    entry = Registry.load().entries["tiny-qwen2-q4_k_m"]
    assert entry.architecture == "qwen2" and entry.quant == "Q4_K_M"
    assert entry.source == f"hf:{qwen2_repo}"
    models = locations.models_dir()
    assert sorted(p.name for p in models.iterdir()) == ["registry.json",
                                                        "tiny-qwen2.Q4_K_M.gguf"]
    assert not list((locations.cache_dir() / "convert").iterdir())  # the F16 is gone
    traj = ask("tiny-qwen2-q4_k_m", capsys)
    assert traj["steps"] and traj["question"] == "What is 6 times 7?"


@pytest.mark.slow
def test_adapter_repos_bin_and_safetensors_register_base_plus_adapter(
        adapter_repos: dict[str, str], hub: HubStandin,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", adapter_repos["safetensors"], "--quant", "Q8_0"]) == 0
    assert main(["models", "pull", adapter_repos["bin"], "--quant", "Q8_0"]) == 0
    reg = Registry.load()
    base = reg.entries["tiny-qwen2-q8_0"]  # pulled (and converted) once, for both
    assert [e.name for e in reg.entries.values() if not e.lora] == [base.name]
    st, pt = reg.entries["student-st"], reg.entries["student-bin"]
    for e in (st, pt):
        assert e.base == base.name and e.path == base.path and e.quant == "Q8_0"
        assert resolve(e.name) == (Path(base.path), Path(str(e.lora)))
    a, b = tensors(Path(str(st.lora))), tensors(Path(str(pt.lora)))
    assert a.keys() == b.keys() and len(a) == 2 * 7 * 2  # A and B, 7 linear layers, 2 blocks
    for name in a:
        assert np.array_equal(a[name], b[name]), name  # .bin read without torch: same adapter
    traj = ask("student-bin", capsys)
    assert traj["steps"] and traj["model"] == "student-bin"  # the registry name of the pair


@pytest.mark.slow
def test_adapter_merge_matches_peft_merge(adapter_repos: dict[str, str], lora_pair: Any,  # noqa: F811
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from converters import convert_to_gguf

    assert main(["models", "pull", adapter_repos["bin"], "--merge", "--quant", "F16",
                 "--name", "merged"]) == 0
    entry = Registry.load().entries["merged"]
    assert entry.lora is None and entry.quant == "F16"
    _adapter, merged_dir = lora_pair("qwen2")
    expected = convert_to_gguf(merged_dir, tmp_path / "peft-merged.gguf", outtype="f16").path
    ours, theirs = tensors(Path(entry.path)), tensors(expected)
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():  # both rounded to f16 once, from float32 merges
        np.testing.assert_allclose(value.astype(np.float32), theirs[name].astype(np.float32),
                                   rtol=2e-3, atol=2e-3, err_msg=name)
    assert ask("merged", capsys)["steps"]


def test_cli_shows_no_traceback_for_an_adapter_without_base(
        hub: HubStandin, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    put(hub, "org/orphan", {"adapter_config.json": b'{"peft_type": "LORA", "r": 8}',
                            "adapter_model.safetensors": b"x" * 16})
    assert main(["models", "pull", "org/orphan"]) == 2
    err = capsys.readouterr().err
    assert "--base" in err.splitlines()[-1] and "Traceback" not in err
