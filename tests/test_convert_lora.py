"""Tests for `converters.lora_gguf`, `edgeagent convert lora` and `LlamaCppEngine(lora=...)`.

The tiny random qwen2 / llama models (and their tokenizer) are test_convert.py's
session fixtures, imported here. Each gets a peft LoRA (r 8, all linear layers,
random non-zero `lora_B`; llama's also uses rsLoRA and an `alpha_pattern`, so
the scale folding is exercised) that is checked two ways against transformers:
merged then converted, and converted as an adapter GGUF applied by llama.cpp to
the converted base (given as its HF directory or its GGUF). Bad inputs must
fail in one line and leave no file. The slow test merges a LoRA into the real
SmolLM2-135M and checks F16 and Q8_0, and applies the unmerged adapter to the
shipped Q4_1 GGUF.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from test_convert import (  # noqa: F401  (fixtures)
    PROMPTS,
    _llama_cpp_or_skip,
    converted,
    smollm2_gguf,
    tiny_llama,
    tiny_qwen2,
    tiny_qwen3,
    tokenizer_files,
)

from edgeagent.errors import UserError

RANK, ALPHA = 8, 16
_LORA_OPTIONS: dict[str, dict[str, Any]] = {
    "qwen2": {},
    "llama": {"use_rslora": True, "alpha_pattern": {"down_proj": 32}},
}


def _attach_lora(model: Any, seed: int, **options: Any) -> Any:
    """`model` wrapped in a peft LoRA on all linear layers, with random non-zero B."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                             target_modules="all-linear", task_type="CAUSAL_LM", **options)
    torch.manual_seed(seed)  # lora_A's init: the same adapter whatever ran before
    wrapped = peft.get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would do nothing
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return wrapped


def _copy_tokenizer(src: Path, dest: Path) -> None:
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(f, dest / f.name)


@pytest.fixture(scope="session")
def lora_pair(
    tiny_qwen2: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> Any:
    """lora_pair(kind) -> (adapter dir, merged HF dir), built once per kind."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    bases = {"qwen2": tiny_qwen2, "llama": tiny_llama}
    built: dict[str, tuple[Path, Path]] = {}

    def build(kind: str) -> tuple[Path, Path]:
        if kind in built:
            return built[kind]
        root = tmp_path_factory.mktemp(f"lora-{kind}")
        base = transformers.AutoModelForCausalLM.from_pretrained(bases[kind], dtype=torch.float32)
        _attach_lora(base, seed=7, **_LORA_OPTIONS[kind]).save_pretrained(root / "adapter")
        # from the saved files, as a user would: transformers with the adapter ...
        base = transformers.AutoModelForCausalLM.from_pretrained(bases[kind], dtype=torch.float32)
        with_adapter = peft.PeftModel.from_pretrained(base, str(root / "adapter")).eval()
        ids = torch.tensor([[1, 504, 3458, 282, 4649, 314]])
        with torch.no_grad():
            adapter_logits = with_adapter(ids).logits
            merged = with_adapter.merge_and_unload()
            merged_logits = merged(ids).logits
        # ... equals the merged model, which verify_gguf then compares with llama.cpp
        assert torch.allclose(adapter_logits, merged_logits, atol=1e-4)
        merged.save_pretrained(root / "merged")
        _copy_tokenizer(bases[kind], root / "merged")
        built[kind] = (root / "adapter", root / "merged")
        return built[kind]

    return build


def _one_line_error(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def _write_fake_adapter(
    path: Path, tensors: dict[str, tuple[int, ...]], **config: Any
) -> Path:
    """A hand-made adapter directory (no torch): zeros of the given shapes."""
    from safetensors.numpy import save_file

    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA, **config}))
    save_file({k: np.zeros(s, dtype=np.float32) for k, s in tensors.items()},
              str(path / "adapter_model.safetensors"))
    return path


_Q = "base_model.model.model.layers.0.self_attn.q_proj"


# --------------------------------------------------------------------------- bad inputs


def test_model_dir_and_missing_files_are_refused(
    tiny_qwen2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    from edgeagent.cli import main

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "a.gguf")
    assert main(["convert", "lora", str(tiny_qwen2), "--base", str(tiny_qwen2), "-o", out]) == 2
    _one_line_error(capsys.readouterr().err, "is a model, not a LoRA adapter")
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    assert main(["convert", "lora", str(only_config), "--base", str(tiny_qwen2), "-o", out]) == 2
    _one_line_error(capsys.readouterr().err, "adapter_model.safetensors is missing")
    assert main(["convert", "lora", str(tmp_path / "nope"), "--base", str(tiny_qwen2)]) == 2
    _one_line_error(capsys.readouterr().err, "does not exist")
    fake = _write_fake_adapter(tmp_path / "fake", {f"{_Q}.lora_A.weight": (8, 64),
                                                   f"{_Q}.lora_B.weight": (64, 8)})
    assert main(["convert", "lora", str(fake), "--base", str(fake), "-o", out]) == 2
    _one_line_error(capsys.readouterr().err, "LoRA adapter, not a model")  # adapter as base
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("tensors", "config", "message"),
    [
        ({f"{_Q}.lora_A.weight": (8, 64), f"{_Q}.lora_B.weight": (64, 8)},
         {"use_dora": True}, "DoRA"),
        ({f"{_Q}.lora_A.weight": (8, 64), f"{_Q}.lora_B.weight": (64, 8),
          f"{_Q}.lora_magnitude_vector": (64,)}, {}, "DoRA"),
        ({f"{_Q}.lora_A.weight": (8, 64), f"{_Q}.lora_B.weight": (64, 8)},
         {"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"base_model.model.model.embed_tokens.lora_embedding_A": (8, 49152),
          "base_model.model.model.embed_tokens.lora_embedding_B": (64, 8)}, {},
         "token embedding"),
        ({f"{_Q}.lora_A.weight": (8, 64)}, {}, "no lora_B"),
        ({f"{_Q}.lora_A.weight": (8, 32), f"{_Q}.lora_B.weight": (64, 8)}, {},
         "does not fit"),
        ({"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight": (8, 64),
          "base_model.model.model.layers.9.self_attn.q_proj.lora_B.weight": (64, 8)}, {},
         "does not have"),
        ({f"{_Q}.lora_A.weight": (8, 64), f"{_Q}.lora_B.weight": (64, 8)},
         {"peft_type": "IA3"}, "IA3 adapter"),
    ],
    ids=["dora-flag", "dora-tensor", "modules-to-save", "embedding", "half-pair", "shape",
         "no-such-module", "not-lora"],
)
def test_unsupported_adapters_are_refused(
    tensors: dict[str, tuple[int, ...]], config: dict[str, Any], message: str,
    tiny_qwen2: Path, tmp_path: Path,  # noqa: F811
) -> None:
    from converters import convert_lora_to_gguf

    adapter = _write_fake_adapter(tmp_path / "adapter", tensors, **config)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(UserError, match=message) as err:
        convert_lora_to_gguf(adapter, tiny_qwen2, out_dir / "a.gguf")
    assert "\n" not in str(err.value)
    assert list(out_dir.iterdir()) == []


# --------------------------------------------------------------------------- file format


def test_lora_gguf_layout(lora_pair: Any, tiny_llama: Path, tmp_path: Path) -> None:  # noqa: F811
    from safetensors.numpy import load_file

    from converters import convert_lora_to_gguf
    from converters.archs import _permute_rotary

    adapter, _ = lora_pair("llama")
    result = convert_lora_to_gguf(adapter, tiny_llama, tmp_path / "a.gguf", outtype="f32")
    assert (result.arch, result.rank, result.alpha, result.n_pairs) == ("llama", 8, 16.0, 14)
    assert result.notes  # rsLoRA / alpha_pattern folded
    reader = gguf.GGUFReader(result.path)
    fields = {k: reader.fields[k].contents() for k in
              ("general.type", "general.architecture", "adapter.type", "adapter.lora.alpha")}
    assert fields == {"general.type": "adapter", "general.architecture": "llama",
                      "adapter.type": "lora", "adapter.lora.alpha": 16.0}
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    assert len(tensors) == 28
    assert tensors["blk.0.attn_q.weight.lora_a"].shape == (8, 64)  # [r, n_in]
    assert tensors["blk.0.attn_k.weight.lora_b"].shape == (32, 8)  # [n_out, r]
    assert tensors["blk.1.ffn_down.weight.lora_a"].shape == (8, 128)
    raw = load_file(str(adapter / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.{}.lora_{}.weight"
    np.testing.assert_array_equal(tensors["blk.0.attn_q.weight.lora_a"],
                                  raw[key.format("self_attn.q_proj", "A")])
    # rsLoRA: peft scales by alpha/sqrt(r), llama.cpp by alpha/r: sqrt(r) folded into B,
    # and the rotary permutation applied to B's rows (4 heads for q, 2 for k)
    fold = np.sqrt(8.0)
    np.testing.assert_allclose(tensors["blk.0.attn_q.weight.lora_b"],
                               _permute_rotary(raw[key.format("self_attn.q_proj", "B")] * fold, 4),
                               rtol=1e-6)
    np.testing.assert_allclose(tensors["blk.0.attn_k.weight.lora_b"],
                               _permute_rotary(raw[key.format("self_attn.k_proj", "B")] * fold, 2),
                               rtol=1e-6)
    np.testing.assert_allclose(tensors["blk.0.attn_v.weight.lora_b"],
                               raw[key.format("self_attn.v_proj", "B")] * fold, rtol=1e-6)
    # alpha_pattern: down_proj has alpha 32 -> (32/sqrt(8)) / (16/8)
    np.testing.assert_allclose(tensors["blk.0.ffn_down.weight.lora_b"],
                               raw[key.format("mlp.down_proj", "B")] * (32 / fold / 2),
                               rtol=1e-6)


def test_base_as_gguf_gives_the_same_file(
    lora_pair: Any, converted: Any, tiny_llama: Path, tmp_path: Path  # noqa: F811
) -> None:
    """The trainer may start from a GGUF: --base accepts the base's GGUF file too."""
    from converters import convert_lora_to_gguf

    adapter, _ = lora_pair("llama")
    from_hf = convert_lora_to_gguf(adapter, tiny_llama, tmp_path / "hf.gguf").path
    from_gguf = convert_lora_to_gguf(adapter, converted("llama", "f16"), tmp_path / "g.gguf").path
    assert from_hf.read_bytes() == from_gguf.read_bytes()
    with pytest.raises(UserError, match="LoRA adapter, not a base model"):
        convert_lora_to_gguf(adapter, from_hf, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


# --------------------------------------------------------------------------- llama.cpp


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_merged_lora_round_trip(kind: str, lora_pair: Any, tmp_path: Path) -> None:
    """(a) merge_and_unload -> save -> convert gguf f32 -> same logits as transformers."""
    _llama_cpp_or_skip()
    from converters import convert_to_gguf, verify_gguf

    _, merged = lora_pair(kind)
    out = convert_to_gguf(merged, tmp_path / "merged.gguf", outtype="f32").path
    report = verify_gguf(merged, out, prompts=PROMPTS, threads=2)
    assert all(c.tokens_match for c in report.checks)
    assert report.max_abs_diff < 1e-2, report.checks
    assert all(c.top1_agree == 1.0 for c in report.checks)


@pytest.mark.parametrize(("kind", "outtype"), [("qwen2", "f16"), ("llama", "f32")])
def test_lora_gguf_on_base_matches_transformers(
    kind: str, outtype: str, lora_pair: Any, converted: Any,  # noqa: F811
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """(b) base f32 GGUF + `convert lora` GGUF in llama.cpp == transformers with the adapter."""
    llama_cpp = _llama_cpp_or_skip()
    from converters import verify_gguf
    from edgeagent.cli import main

    adapter, merged = lora_pair(kind)
    base_dir = request.getfixturevalue(f"tiny_{kind}")
    base_gguf = converted(kind, "f32")
    lora = tmp_path / f"{kind}.lora.gguf"
    assert main(["convert", "lora", str(adapter), "--base", str(base_dir), "--out", str(lora),
                 "--outtype", outtype]) == 0
    assert f"{kind} LoRA, r 8" in capsys.readouterr().out
    without = verify_gguf(merged, base_gguf, prompts=PROMPTS, threads=2)
    assert without.max_abs_diff > 0.1  # the adapter matters
    # verify_gguf builds llama_cpp.Llama; have it apply the adapter
    monkeypatch.setattr(llama_cpp, "Llama", functools.partial(llama_cpp.Llama,
                                                              lora_path=str(lora)))
    report = verify_gguf(merged, base_gguf, prompts=PROMPTS, threads=2)
    assert all(c.tokens_match for c in report.checks)
    assert report.max_abs_diff < 1e-2, report.checks
    assert all(c.top1_agree == 1.0 for c in report.checks)


def _greedy(path: Path, **kw: Any) -> str:
    from edgeagent.engines.llamacpp import LlamaCppEngine

    with LlamaCppEngine(path, n_ctx=256, n_threads=2, max_parallel=1, **kw) as engine:
        out = engine.generate(PROMPTS[0], max_tokens=12, ignore_eos=True)
        assert kw.get("lora") is None or engine.info()["lora"] == str(kw["lora"])
    return out[0].text


def test_engine_applies_lora(
    lora_pair: Any, converted: Any, tiny_llama: Path, tmp_path: Path  # noqa: F811
) -> None:
    _llama_cpp_or_skip()
    from converters import convert_lora_to_gguf, convert_to_gguf

    adapter, merged = lora_pair("llama")
    lora = convert_lora_to_gguf(adapter, tiny_llama, tmp_path / "a.gguf", outtype="f32").path
    merged_gguf = convert_to_gguf(merged, tmp_path / "m.gguf", outtype="f32").path
    base = converted("llama", "f32")
    with_lora = _greedy(base, lora=lora)
    assert with_lora == _greedy(merged_gguf)
    assert with_lora != _greedy(base)
    assert _greedy(base, lora=lora, lora_scale=0.0) == _greedy(base)


def test_engine_refuses_bad_adapters(
    lora_pair: Any, converted: Any, tiny_qwen2: Path, tiny_llama: Path,  # noqa: F811
    default_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """(c) an adapter for another architecture or other shapes: one line at load time."""
    _llama_cpp_or_skip()
    from converters import convert_lora_to_gguf
    from edgeagent.cli import main
    from edgeagent.engines.llamacpp import LlamaCppEngine

    qwen2_lora = convert_lora_to_gguf(lora_pair("qwen2")[0], tiny_qwen2,
                                      tmp_path / "q.gguf").path
    llama_lora = convert_lora_to_gguf(lora_pair("llama")[0], tiny_llama,
                                      tmp_path / "l.gguf").path
    llama_base = converted("llama", "f32")
    with pytest.raises(UserError, match="arch mismatch") as err:
        LlamaCppEngine(llama_base, n_ctx=64, lora=qwen2_lora)
    assert "\n" not in str(err.value) and "q.gguf" in str(err.value)
    with pytest.raises(UserError, match="incorrect shape"):  # SmolLM2: llama, hidden 576
        LlamaCppEngine(default_model, n_ctx=64, lora=llama_lora)
    with pytest.raises(UserError, match="LoRA adapter not found"):
        LlamaCppEngine(llama_base, n_ctx=64, lora=tmp_path / "missing.gguf")
    with pytest.raises(UserError, match="not a GGUF"):
        LlamaCppEngine(llama_base, n_ctx=64, lora=tiny_llama / "config.json")
    assert main(["ask", "hi", "--no-wiki", "--model", str(llama_base), "--n-ctx", "64",
                 "--lora", str(qwen2_lora)]) == 2
    _one_line_error(capsys.readouterr().err, "arch mismatch")
    assert main(["ask", "hi", "--no-wiki", "--lora-scale", "0.5"]) == 2
    _one_line_error(capsys.readouterr().err, "--lora-scale needs --lora")


# --------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_smollm2_lora_merge_converts_and_quantizes(default_model: Path, tmp_path: Path) -> None:
    """SmolLM2-135M + a random LoRA, merged: F16 matches transformers, Q8_0 keeps top-1."""
    _llama_cpp_or_skip()
    torch = pytest.importorskip("torch")
    from converters import convert_lora_to_gguf, convert_to_gguf, quantize_gguf, verify_gguf
    from trainer.hf import load_model, load_tokenizer, strip_quantizer

    model = load_model(str(default_model), dtype=torch.float32, device="cpu")
    tokenizer = load_tokenizer(str(default_model))
    wrapped = _attach_lora(model, seed=3)
    with torch.no_grad():  # keep the merged model sane: a small random update
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.mul_(0.05)
    wrapped.save_pretrained(tmp_path / "adapter")
    merged = wrapped.merge_and_unload()
    strip_quantizer(merged)
    hf_dir = tmp_path / "smollm2-lora-merged"
    merged.save_pretrained(hf_dir, safe_serialization=True)
    tokenizer.save_pretrained(hf_dir)
    del model, wrapped, merged
    f16 = convert_to_gguf(hf_dir, tmp_path / "m.f16.gguf", outtype="f16").path
    report = verify_gguf(hf_dir, f16, threads=2)
    assert report.weight_type == "F16"
    assert all(c.tokens_match for c in report.checks), report.checks
    assert report.ok, (report.max_abs_diff, report.checks)
    q8 = quantize_gguf(f16, "Q8_0", threads=2).path
    q8_report = verify_gguf(hf_dir, q8, threads=2)
    assert q8_report.weight_type == "Q8_0"
    assert all(c.tokens_match for c in q8_report.checks)
    # top-1 over all positions: SmolLM2 has near-ties (the chat prompt's next token
    # leads by 0.02 logits, some code positions by less), which Q8_0 may flip
    agree = [c.top1_agree for c in q8_report.checks]
    assert min(agree) >= 0.75 and sum(agree) / len(agree) >= 0.85, q8_report.checks
    assert q8_report.checks[0].next_token_match  # "The capital of France is": clear lead
    # the unmerged adapter on the shipped Q4_1 GGUF, as `ask --lora` runs it
    lora = convert_lora_to_gguf(tmp_path / "adapter", default_model, tmp_path / "a.gguf").path
    assert _greedy(default_model, lora=lora)


def test_models_add_records_a_conversion_and_refuses_an_adapter(
        lora_pair: Any, tiny_llama: Path, converted: Any, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from converters import convert_lora_to_gguf
    from edgeagent.cli import main
    from edgeagent.models.registry import Registry

    model = converted("llama", "f16")
    assert main(["models", "add", str(model), "--name", "tiny-student"]) == 0
    entry = Registry.load().get("tiny-student")
    assert (entry.architecture, entry.quant) == ("llama", "F16")
    assert entry.size_bytes == model.stat().st_size
    # the HF directory it was converted from (file:// URI), read back from the GGUF
    assert entry.source.startswith("converted:file:///")
    from urllib.parse import unquote, urlparse

    src = Path(unquote(urlparse(entry.source.removeprefix("converted:")).path))
    assert json.loads((src / "config.json").read_text())["model_type"] == "llama"
    assert entry.sha256 == hashlib.sha256(model.read_bytes()).hexdigest()
    capsys.readouterr()

    adapter, _ = lora_pair("llama")
    lora = convert_lora_to_gguf(adapter, tiny_llama, tmp_path / "a.gguf").path
    capsys.readouterr()
    assert main(["models", "add", str(lora)]) != 0
    err = capsys.readouterr().err
    assert "is a LoRA adapter, not a model" in err and "--lora" in err
    assert err.count("\n") == 1
    assert [e.name for e in Registry.load().entries.values()] == ["tiny-student"]


def test_eval_applies_lora(
    lora_pair: Any, converted: Any, tiny_llama: Path, tmp_path: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`eval --lora`: the adapter on the base answers like the merged model; the
    run records it, and resuming that folder without it is refused."""
    _llama_cpp_or_skip()
    from test_eval_support import write_bench

    from converters import convert_lora_to_gguf, convert_to_gguf
    from edgeagent.agent.trajectory import read_records
    from edgeagent.cli import main

    adapter, merged = lora_pair("llama")
    lora = convert_lora_to_gguf(adapter, tiny_llama, tmp_path / "a.gguf", outtype="f32").path
    merged_gguf = convert_to_gguf(merged, tmp_path / "m.gguf", outtype="f32").path
    base = converted("llama", "f32")
    bench = write_bench(tmp_path / "gsm_tiny.json", [
        {"id": i, "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(2)])

    def run(out: str, model: Path, *extra: str) -> list[str]:
        argv = ["eval", "--bench", str(bench), "--mode", "direct", "--max-tokens", "8",
                "--n-ctx", "512", "--threads", "2", "--model", str(model),
                "--out", str(tmp_path / out), *extra]
        assert main(argv) == 0, capsys.readouterr().err
        return [r.steps[0].text for r in read_records(tmp_path / out / "gsm_tiny.jsonl")]

    with_lora = run("lora", base, "--lora", str(lora))
    assert with_lora == run("merged", merged_gguf)
    assert with_lora != run("base", base)
    settings = json.loads((tmp_path / "lora" / "run.json").read_text())
    assert settings["lora"] == "a.gguf" and settings["lora_scale"] == 1.0
    assert json.loads((tmp_path / "base" / "run.json").read_text())["lora"] is None
    capsys.readouterr()
    assert main(["eval", "--bench", str(bench), "--mode", "direct", "--max-tokens", "8",
                 "--model", str(base), "--out", str(tmp_path / "lora")]) == 2
    _one_line_error(capsys.readouterr().err, "other settings (lora")
    assert main(["eval", "--bench", str(bench), "--out", str(tmp_path / "x"),
                 "--lora-scale", "0.5"]) == 2
    _one_line_error(capsys.readouterr().err, "--lora-scale needs --lora")
    assert main(["eval", "--bench", str(bench), "--out", str(tmp_path / "x"),
                 "--lora", str(tmp_path / "missing.gguf")]) == 2
    _one_line_error(capsys.readouterr().err, "LoRA adapter not found")
