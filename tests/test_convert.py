"""Tests for `converters` and `edgeagent convert`: HF -> GGUF -> llama.cpp round trips.

Fixtures build tiny random qwen2 / llama / qwen3 models (hidden 64, 2 layers)
with the real SmolLM2 tokenizer, rebuilt once per session from the default
model's GGUF (conftest's `default_model`, fetched once into the test cache). Tests that need torch
skip without it; tests that need llama.cpp skip when llama_cpp is not importable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from edgeagent.errors import UserError

PROMPTS = [
    "The capital of France is",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "In 1969, 3 astronauts flew 384400 km. Ünïcödé 東京 🚀!",
    "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n",
]


def _llama_cpp_or_skip() -> Any:
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a broken native library
        pytest.skip(f"llama_cpp is not importable ({exc.__class__.__name__}: {exc})")
    return llama_cpp


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smollm2_gguf(default_model: Path) -> Path:
    """The real SmolLM2-135M-Instruct GGUF (conftest's `default_model`): its tokenizer."""
    return default_model


def _write_tokenizer(src_gguf: Path, out: Path, *, template_in_config: bool) -> None:
    """SmolLM2's tokenizer files (as on the Hub) rebuilt from its GGUF."""
    reader = gguf.GGUFReader(src_gguf)
    fields = reader.fields
    tokens = [str(t) for t in fields["tokenizer.ggml.tokens"].contents()]
    types = [int(t) for t in fields["tokenizer.ggml.token_type"].contents()]
    merges = [str(m).split(" ") for m in fields["tokenizer.ggml.merges"].contents()]
    template = str(fields["tokenizer.chat_template"].contents())
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, (t, ty) in enumerate(zip(tokens, types, strict=True))
        if ty == int(gguf.TokenType.CONTROL)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": byte_level,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "model_max_length": 8192,
    }
    if template_in_config:
        config["chat_template"] = template
    else:
        (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="session")
def tokenizer_files(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer")
    _write_tokenizer(smollm2_gguf, out, template_in_config=False)
    return out


def _make_model(kind: str, out: Path, tokenizer_files: Path) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    common: dict[str, Any] = dict(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    )
    torch.manual_seed({"qwen2": 1, "llama": 2, "qwen3": 3}[kind])
    if kind == "qwen2":
        config = transformers.Qwen2Config(tie_word_embeddings=True, **common)
        model = transformers.Qwen2ForCausalLM(config)
    elif kind == "llama":
        config = transformers.LlamaConfig(tie_word_embeddings=False, rope_theta=10000.0,
                                          **common)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen3Config(tie_word_embeddings=True, head_dim=32, **common)
        model = transformers.Qwen3ForCausalLM(config)
    # Shape the random weights so the checks mean something: sharp attention
    # (q/k x6: a wrong rotary permutation moves the logits by ~0.5), random
    # biases and norms (a mis-mapped one shows), and a strong embedding path so
    # the top-1 token has a margin that Q4_0 noise does not flip.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(6.0)
            if "embed_tokens" in name:
                p.mul_(3.0)
            if name.endswith(".bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
        if kind == "llama":  # untied, but close to the embedding
            emb = model.model.embed_tokens.weight
            model.lm_head.weight.copy_(emb + torch.randn_like(emb) * 0.01)
    model.save_pretrained(out)
    for f in tokenizer_files.iterdir():
        shutil.copy(f, out / f.name)
    if kind == "llama":  # template inside tokenizer_config.json, the transformers-4 way
        template = (out / "chat_template.jinja").read_text(encoding="utf-8")
        (out / "chat_template.jinja").unlink()
        cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
        cfg["chat_template"] = template
        (out / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def tiny_qwen2(tokenizer_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model("qwen2", tmp_path_factory.mktemp("qwen2"), tokenizer_files)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model("llama", tmp_path_factory.mktemp("llama"), tokenizer_files)


@pytest.fixture(scope="session")
def tiny_qwen3(tokenizer_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model("qwen3", tmp_path_factory.mktemp("qwen3"), tokenizer_files)


_CONVERTED: dict[tuple[str, str], Path] = {}


@pytest.fixture(scope="session")
def converted(
    tiny_qwen2: Path, tiny_llama: Path, tiny_qwen3: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """convert(kind, outtype) -> GGUF path, converted once per session."""
    from converters import convert_to_gguf

    dirs = {"qwen2": tiny_qwen2, "llama": tiny_llama, "qwen3": tiny_qwen3}
    out_dir = tmp_path_factory.mktemp("gguf")

    def convert(kind: str, outtype: str = "f16") -> Path:
        key = (kind, outtype)
        if key not in _CONVERTED:
            _CONVERTED[key] = convert_to_gguf(
                dirs[kind], out_dir / f"{kind}.{outtype}.gguf", outtype=outtype
            ).path
        return _CONVERTED[key]

    return convert


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


# --------------------------------------------------------------------------- units (no torch)


def test_unsupported_architecture_lists_supported() -> None:
    from converters.archs import detect_arch

    with pytest.raises(UserError) as err:
        detect_arch({"architectures": ["GemmaForCausalLM"], "model_type": "gemma"})
    msg = str(err.value)
    assert "GemmaForCausalLM" in msg
    for name in ("Qwen2ForCausalLM", "LlamaForCausalLM", "Qwen3ForCausalLM"):
        assert name in msg
    assert detect_arch({"model_type": "qwen3"}) == "qwen3"


def test_adapter_directory_is_refused(tmp_path: Path) -> None:
    from converters.hf_dir import HFModelDir

    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="LoRA adapter"):
        HFModelDir.open(tmp_path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no config.json"),
        (lambda p: (p / "config.json").write_text("{}"), "no \\*.safetensors"),
        (lambda p: (p / "config.json").write_text("{not json"), "cannot read"),
    ],
)
def test_bad_model_directories(tmp_path: Path, setup: Any, message: str) -> None:
    from converters.hf_dir import HFModelDir

    setup(tmp_path)
    with pytest.raises(UserError, match=message):
        HFModelDir.open(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        HFModelDir.open(tmp_path / "nope")


def test_pre_tokenizer_detection() -> None:
    from converters.tokenizer_meta import _LLAMA3_REGEX, _QWEN2_REGEX, detect_pre_tokenizer

    byte_level = {"type": "ByteLevel", "use_regex": True}
    split = {"type": "ByteLevel", "use_regex": False}
    assert detect_pre_tokenizer(byte_level) == "gpt-2"
    assert detect_pre_tokenizer({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, byte_level]}) == "smollm"
    for regex, name in ((_QWEN2_REGEX, "qwen2"), (_LLAMA3_REGEX, "llama-bpe")):
        node = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated"}, split]}
        assert detect_pre_tokenizer(node) == name
    with pytest.raises(UserError, match="known: gpt-2"):
        detect_pre_tokenizer({"type": "Whitespace"})


def test_rotary_permutation_interleaves_halves() -> None:
    from converters.archs import _permute_rotary

    n_head, head_dim, cols = 2, 8, 3
    w = np.arange(n_head * head_dim * cols, dtype=np.float32).reshape(n_head * head_dim, cols)
    out = _permute_rotary(w, n_head)
    half = head_dim // 2
    for h in range(n_head):
        for i in range(half):  # HF: [x0..x3 | y0..y3] -> llama.cpp: x0 y0 x1 y1 ...
            assert (out[h * head_dim + 2 * i] == w[h * head_dim + i]).all()
            assert (out[h * head_dim + 2 * i + 1] == w[h * head_dim + half + i]).all()
    assert _permute_rotary(np.arange(16.0), 2).shape == (16,)  # biases too


def test_llama3_rope_factors_and_transformers5_config() -> None:
    from converters.archs import ArchSpec

    config = {"num_hidden_layers": 1, "num_attention_heads": 4, "hidden_size": 256,
              "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192}}
    extra = ArchSpec("llama", config).extra_tensors()
    assert [name for name, _ in extra] == ["rope_freqs.weight"]
    factors = extra[0][1]()
    assert factors.shape == (32,) and factors.dtype == np.float32
    assert factors[0] == 1.0 and factors[-1] == 32.0
    assert ArchSpec("qwen2", {**config, "rope_parameters": {}}).extra_tensors() == []


def test_bf16_tensors_are_read_exactly(tmp_path: Path) -> None:
    from converters.hf_dir import HFModelDir

    values = np.array([[1.0, -2.5, 3.140625], [0.0, 65504.0, -1e-3]], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}})
    header_bytes = header.encode() + b" " * (-len(header) % 8)
    (tmp_path / "model.safetensors").write_bytes(
        len(header_bytes).to_bytes(8, "little") + header_bytes + bits.tobytes()
    )
    (tmp_path / "config.json").write_text("{}")
    got = HFModelDir.open(tmp_path).load("w")
    expected = (bits.astype(np.uint32) << 16).view(np.float32).reshape(2, 3)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


def test_cli_module_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, edgeagent.cli as c; c.build_parser(); "
        "bad = [m for m in ('torch', 'transformers', 'converters', 'llama_cpp', 'gguf') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.cli import main

    assert main(["convert", "gguf", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err
    (tmp_path / "x.gguf").write_bytes(b"nope")
    assert main(["convert", "quantize", str(tmp_path / "x.gguf")]) == 2
    assert "not a GGUF" in capsys.readouterr().err
    assert main(["convert", "quantize", str(tmp_path / "x.gguf"), "--type", "Q9_9"]) == 2
    assert "Q4_K_M" in capsys.readouterr().err


# --------------------------------------------------------------------------- writer (torch)


def test_metadata_round_trip(converted: Any, tiny_qwen2: Path, tiny_llama: Path) -> None:
    qwen2 = gguf.GGUFReader(converted("qwen2", "f16"))
    llama = gguf.GGUFReader(converted("llama", "f16"))
    template = (tiny_qwen2 / "chat_template.jinja").read_text(encoding="utf-8")
    cfg = json.loads((tiny_llama / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert _field(qwen2, "tokenizer.chat_template") == template  # transformers-5 layout
    assert _field(llama, "tokenizer.chat_template") == cfg["chat_template"]  # transformers-4
    for r in (qwen2, llama):
        tokens = _field(r, "tokenizer.ggml.tokens")
        assert tokens[_field(r, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"
        assert tokens[_field(r, "tokenizer.ggml.bos_token_id")] == "<|im_start|>"
        assert _field(r, "tokenizer.ggml.add_bos_token") is False
        assert len(tokens) == 49152 and len(_field(r, "tokenizer.ggml.merges")) == 48900
        assert _field(r, "tokenizer.ggml.token_type")[2] == int(gguf.TokenType.CONTROL)
    assert _field(qwen2, "general.architecture") == "qwen2"
    # transformers 5 splits qwen2 text with Qwen2's regex whatever tokenizer.json says
    assert _field(qwen2, "tokenizer.ggml.pre") == "qwen2"
    assert _field(llama, "tokenizer.ggml.pre") == "smollm"
    assert _field(llama, "llama.attention.head_count_kv") == 2
    names_q = {t.name for t in qwen2.tensors}
    names_l = {t.name for t in llama.tensors}
    assert "output.weight" not in names_q  # tied: lm_head skipped
    assert "output.weight" in names_l and "blk.1.attn_q.bias" in names_q
    types = {t.name: t.tensor_type for t in qwen2.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_qwen3_head_dim_and_qk_norm(converted: Any) -> None:
    r = gguf.GGUFReader(converted("qwen3", "f16"))
    assert _field(r, "qwen3.attention.key_length") == 32
    assert _field(r, "qwen3.rope.dimension_count") == 32
    assert "blk.0.attn_q_norm.weight" in {t.name for t in r.tensors}


def test_sharded_checkpoint_matches_single(
    tiny_llama: Path, converted: Any, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    from converters import convert_to_gguf

    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama)
    shard_dir = tmp_path / "sharded"
    model.save_pretrained(shard_dir, max_shard_size="2MB")
    assert (shard_dir / "model.safetensors.index.json").exists()
    for f in tiny_llama.glob("*token*"):
        shutil.copy(f, shard_dir / f.name)
    out = convert_to_gguf(shard_dir, tmp_path / "s.gguf", outtype="f16").path
    a = {t.name: np.array(t.data) for t in gguf.GGUFReader(out).tensors}
    b = {t.name: np.array(t.data) for t in gguf.GGUFReader(converted("llama", "f16")).tensors}
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_missing_tokenizer_and_unsupported_model(tiny_qwen2: Path, tmp_path: Path) -> None:
    from converters import convert_to_gguf

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_qwen2 / name, bare / name)
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        convert_to_gguf(bare, out_dir / "x.gguf")
    cfg = json.loads((bare / "config.json").read_text())
    cfg["architectures"] = ["MistralForCausalLM"]
    (bare / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="supported: Qwen2ForCausalLM"):
        convert_to_gguf(bare, out_dir / "x.gguf")
    assert list(out_dir.iterdir()) == []


def test_disk_full_leaves_no_partial_file(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from converters import convert_to_gguf

    out_dir = tmp_path / "out"  # tmp_path itself may hold other fixtures' files
    out_dir.mkdir()
    out = out_dir / "model.gguf"
    out.write_bytes(b"previous good file")
    calls = {"n": 0}
    real = gguf.GGUFWriter.write_tensor_data

    def failing(self: gguf.GGUFWriter, tensor: Any, *a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, tensor, *a, **k)

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", failing)
    with pytest.raises(UserError, match="no space left"):
        convert_to_gguf(tiny_qwen2, out)
    assert out.read_bytes() == b"previous good file"
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.gguf"]


def test_cli_gguf_writes_default_name(tiny_qwen3: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeagent.cli import main

    assert main(["convert", "gguf", str(tiny_qwen3), "--outtype", "q8_0"]) == 0
    out = capsys.readouterr().out
    expected = tiny_qwen3 / f"{tiny_qwen3.name}.Q8_0.gguf"
    assert expected.exists() and "qwen3, q8_0" in out
    expected.unlink()


# --------------------------------------------------------------------------- llama.cpp round trips


@pytest.mark.parametrize("kind", ["qwen2", "llama", "qwen3"])
def test_f16_round_trip(kind: str, converted: Any, request: pytest.FixtureRequest) -> None:
    _llama_cpp_or_skip()
    from converters import verify_gguf

    model_dir = request.getfixturevalue(f"tiny_{kind}")
    report = verify_gguf(model_dir, converted(kind, "f16"), prompts=PROMPTS)
    assert report.weight_type == "F16"
    assert all(c.tokens_match for c in report.checks), report.checks
    assert report.max_abs_diff < 1e-2, report.checks
    assert all(c.top1_agree == 1.0 for c in report.checks)
    assert report.ok


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_q8_0_and_q4_0_keep_top1(kind: str, converted: Any, request: pytest.FixtureRequest) -> None:
    _llama_cpp_or_skip()
    from converters import quantize_gguf, verify_gguf

    model_dir = request.getfixturevalue(f"tiny_{kind}")
    q4 = quantize_gguf(converted(kind, "f16"), "Q4_0", threads=2).path
    assert q4.name == f"{kind}.Q4_0.gguf"
    for path, wtype in ((converted(kind, "q8_0"), "Q8_0"), (q4, "Q4_0")):
        report = verify_gguf(model_dir, path, prompts=PROMPTS)
        assert report.weight_type == wtype
        assert report.tolerance is None and report.ok
        assert all(c.tokens_match for c in report.checks)
        assert all(c.next_token_match for c in report.checks), (wtype, report.checks)


def test_wrong_rotary_permutation_is_caught(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Negative control: without llama's q/k permutation, verify fails (exit 1)."""
    _llama_cpp_or_skip()
    from converters import archs, convert_to_gguf
    from edgeagent.cli import main

    monkeypatch.setattr(archs.ArchSpec, "transform", lambda self, name, data: data)
    bad = convert_to_gguf(tiny_llama, tmp_path / "bad.gguf", outtype="f32").path
    monkeypatch.undo()
    assert main(["convert", "verify", str(tiny_llama), str(bad), "-p", PROMPTS[1]]) == 1
    captured = capsys.readouterr()
    assert "disagrees" in captured.err and "max|Δlogit|" in captured.out


def test_quantize_reports_fallbacks(converted: Any, tmp_path: Path) -> None:
    _llama_cpp_or_skip()
    from converters import quantize_gguf

    seen: list[int] = []
    result = quantize_gguf(converted("qwen2", "f16"), "q4_k_m", out=tmp_path / "q.gguf",
                           threads=2, progress=lambda done, total, name: seen.append(done))
    assert result.path == tmp_path / "q.gguf" and result.qtype == "Q4_K_M"
    # 64-wide rows are not a multiple of 256: every K-quant matrix falls back
    assert result.n_fallback > 0 and "Q4_K" not in result.type_counts
    assert seen and max(seen) == sum(result.type_counts.values())
    with pytest.raises(UserError, match=r"already quantized|requantize"):
        quantize_gguf(result.path, "Q4_0", out=tmp_path / "again.gguf")
    assert not (tmp_path / "again.gguf").exists()


def test_chat_template_and_eos_through_llama_cpp(converted: Any, tiny_llama: Path) -> None:
    llama_cpp = _llama_cpp_or_skip()
    q4 = converted("llama", "q8_0")
    llm = llama_cpp.Llama(model_path=str(q4), vocab_only=True, verbose=False)
    try:
        cfg = json.loads((tiny_llama / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert llm.metadata["tokenizer.chat_template"] == cfg["chat_template"]
        assert llm.token_eos() == 2
        assert llm.detokenize([llm.token_eos()], special=True) == b"<|im_end|>"
    finally:
        llm.close()
