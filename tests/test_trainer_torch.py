"""Tests for `trainer.render`, `trainer.train`, `trainer.merge` on a tiny random Qwen2.

The model is DESIGN.md's tiny Qwen2 (hidden 64, 2 layers, vocab 49152) with
SmolLM2's real tokenizer, loaded once from the default model's GGUF through
transformers and cached in the test cache (loading it from the GGUF takes
~10 s the first time). Trajectories are gold-annotation GSM8K ones from
../shared/data. Skips without torch/transformers/peft.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch
import transformers

from edgeagent.agent.trajectory import append_records
from edgeagent.atomic import atomic_folder
from edgeagent.cli import main
from trainer.gold import gold_trajectory
from trainer.render import (
    IGNORE,
    NoSupervisedTokens,
    Rendered,
    collate,
    render_messages,
    visualize,
)


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(default_model: Path) -> Path:
    from conftest import TEST_CACHE

    out = TEST_CACHE / "smollm2-tokenizer"
    if not (out / "tokenizer.json").exists():
        tok = transformers.AutoTokenizer.from_pretrained(
            default_model.parent, gguf_file=default_model.name)
        with atomic_folder(out) as tmp:
            tok.save_pretrained(tmp)
    return out


@pytest.fixture(scope="session")
def tokenizer(smollm2_tokenizer_dir: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen2(smollm2_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-qwen2")
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=2048)
    transformers.Qwen2ForCausalLM(config).save_pretrained(out)
    for f in smollm2_tokenizer_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture(scope="session")
def gold_records(shared_data: Path) -> list[Any]:
    path = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    lines = [ln for ln in path.read_text("utf-8").split("\n")[:6] if ln.strip()]
    return [gold_trajectory(json.loads(ln), task_id=f"g{i}") for i, ln in enumerate(lines)]


# --------------------------------------------------------------------------- masking


def _expected(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """ChatML built by hand, segment by segment: what render_messages must produce."""
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, trained: bool) -> None:
        seg = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(seg)
        labels.extend(seg if trained else [IGNORE] * len(seg))

    for m in messages:
        add(f"<|im_start|>{m['role']}\n", False)
        add(m["content"], m["role"] == "assistant")
        add("<|im_end|>", m["role"] == "assistant")
        add("\n", False)
    return ids, labels


def test_labels_are_exactly_the_assistant_turns(tokenizer: Any, gold_records: list[Any]) -> None:
    for rec in gold_records[:3]:
        r = render_messages(tokenizer, rec.messages)
        ids, labels = _expected(tokenizer, rec.messages)
        assert r.input_ids == ids
        assert r.labels == labels
    rec = gold_records[0]
    r = render_messages(tokenizer, rec.messages)
    trained_runs: list[list[int]] = [[]]
    for tok, lab in zip(r.input_ids, r.labels, strict=True):
        if lab == IGNORE:
            if trained_runs[-1]:
                trained_runs.append([])
        else:
            assert lab == tok
            trained_runs[-1].append(tok)
    runs = [tokenizer.decode(run) for run in trained_runs if run]
    assert runs == [rec.messages[2]["content"] + "<|im_end|>",
                    rec.messages[4]["content"] + "<|im_end|>"]
    # system, task and observation text never carries a label
    masked = tokenizer.decode([t for t, lab in zip(r.input_ids, r.labels, strict=True)
                               if lab == IGNORE])
    for m in rec.messages:
        if m["role"] != "assistant":
            assert m["content"] in masked
    assert "<|im_start|>assistant\n" in masked


def test_visual_dump_marks_trained_tokens(tokenizer: Any, gold_records: list[Any]) -> None:
    r = render_messages(tokenizer, gold_records[0].messages)
    plain = visualize(tokenizer, r, color=False)
    assert plain.count("⟦") == 2
    assert "<|im_start|>assistant\n⟦Thought: I will compute" in plain
    assert "```<end_code><|im_end|>⟧\n<|im_start|>user\nCall id: call_1" in plain
    coloured = visualize(tokenizer, r, color=True)
    assert "\x1b[30;42m" in coloured and "\x1b[2m" in coloured


def test_no_supervised_tokens_is_an_error(tokenizer: Any, gold_records: list[Any]) -> None:
    msgs = gold_records[0].messages
    with pytest.raises(NoSupervisedTokens, match="max-len 50"):
        render_messages(tokenizer, msgs, max_len=50, example_id="g0")
    with pytest.raises(NoSupervisedTokens, match="no assistant turn"):
        render_messages(tokenizer, msgs[:2])
    masked = Rendered([1, 2, 3], [IGNORE] * 3)
    with pytest.raises(NoSupervisedTokens, match="every label is masked"):
        collate([masked, masked], pad_id=0)
    ok = render_messages(tokenizer, msgs)
    batch = collate([ok, masked], pad_id=0)
    assert batch["input_ids"].shape == (2, len(ok.input_ids))
    assert int(batch["attention_mask"][1].sum()) == 3


# --------------------------------------------------------------------------- train / merge


def _logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def _data_loss(model: Any, tokenizer: Any, records: list[Any]) -> float:
    total = count = 0.0
    for rec in records:
        r = render_messages(tokenizer, rec.messages)
        logits = _logits(model, r.input_ids)[:-1]
        labels = torch.tensor(r.labels[1:])
        total += float(torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE,
                                                         reduction="sum"))
        count += r.n_trained
    return total / count


@pytest.mark.slow
def test_lora_training_merge_and_convert(tiny_qwen2: Path, gold_records: list[Any],
                                         tokenizer: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from peft import PeftModel

    from trainer.train import TrainConfig, train

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:4])
    adapter = tmp_path / "lora"
    result = train(TrainConfig(model=str(tiny_qwen2), data=data, out=adapter, epochs=2,
                               lr=3e-2, rank=8, alpha=16, dropout=0.0, batch_size=1,
                               grad_accum=1, max_len=1024))
    assert result.examples == 4 and result.steps == 8
    assert result.trained_tokens > 0 and result.tokens_per_s > 0
    epoch1, epoch2 = result.losses[:4], result.losses[4:]  # the same 4 examples each epoch
    assert sum(epoch2) / 4 < sum(epoch1) / 4 - 0.1, result.losses
    assert (adapter / "adapter_model.safetensors").exists()
    summary = json.loads((adapter / "train_summary.json").read_text())
    assert summary["tokens_per_s"] == result.tokens_per_s
    assert len((adapter / "train_log.jsonl").read_text().splitlines()) == 8

    merged = tmp_path / "merged"
    assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapter", str(adapter),
                 "--out", str(merged)]) == 0
    assert "merged" in capsys.readouterr().out
    assert (merged / "model.safetensors").exists() and (merged / "tokenizer.json").exists()

    ids = render_messages(tokenizer, gold_records[5].messages).input_ids[:200]
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    base_logits = _logits(base, ids)
    with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()  # wraps `base` in place
    want = _logits(with_adapter, ids)
    got = _logits(transformers.AutoModelForCausalLM.from_pretrained(
        merged, dtype=torch.float32).eval(), ids)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base_logits, want, atol=1e-2)
    # the loss on the training data, before (base) and after (merged): it fell
    merged_model = transformers.AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    fresh_base = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2,
                                                                   dtype=torch.float32)
    before = _data_loss(fresh_base, tokenizer, gold_records[:4])
    after = _data_loss(merged_model, tokenizer, gold_records[:4])
    assert after < before - 0.1, (before, after)  # measured here: 10.81 -> 10.65

    from converters import convert_to_gguf

    gguf_path = convert_to_gguf(merged, tmp_path / "student.gguf", outtype="f32").path
    assert gguf_path.stat().st_size > 0
    try:
        import llama_cpp  # noqa: F401
    except Exception:
        return
    from converters import verify_gguf

    report = verify_gguf(merged, gguf_path, prompts=["What is 48 / 2?"])
    assert report.ok, report


@pytest.mark.slow
def test_cli_train_reports_tokens_per_second(tiny_qwen2: Path, gold_records: list[Any],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:2])
    assert main(["distill", "render", str(data), "--model", str(tiny_qwen2)]) == 0
    assert "2 examples" in capsys.readouterr().out
    assert main(["distill", "render", str(data), "--model", str(tiny_qwen2), "--show",
                 "--no-color", "--index", "1"]) == 0
    assert "⟦Thought:" in capsys.readouterr().out
    assert main(["distill", "train", "--model", str(tiny_qwen2), "--data", str(data),
                 "--out", str(tmp_path / "lora"), "--epochs", "1", "--rank", "4",
                 "--alpha", "8", "--batch-size", "1", "--grad-accum", "1",
                 "--max-len", "1024"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "2 steps on 2 examples" in out
    wrong = tmp_path / "other-base"
    other = transformers.Qwen2Config(vocab_size=49152, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, tie_word_embeddings=True)
    transformers.Qwen2ForCausalLM(other).save_pretrained(wrong)
    for f in tiny_qwen2.glob("tokenizer*"):
        (wrong / f.name).write_bytes(f.read_bytes())
    assert main(["distill", "merge", "--base", str(wrong), "--adapter", str(tmp_path / "lora"),
                 "--out", str(tmp_path / "m")]) == 2
    assert "does not fit the base" in capsys.readouterr().err


# --------------------------------------------------------------------------- speed paths, resume


def _cfg(model: Path, data: Path, out: Path, **kw: Any) -> Any:
    from trainer.train import TrainConfig

    base: dict[str, Any] = dict(model=str(model), data=data, out=out, epochs=1, lr=3e-2,
                                rank=4, alpha=8, dropout=0.1, batch_size=1, grad_accum=2,
                                max_len=1024, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_prefix_cache_and_kept_logits_give_the_same_first_loss(
        tiny_qwen2: Path, gold_records: list[Any], tmp_path: Path) -> None:
    """The first step's loss (before any update) is exact with the shared-prefix KV cache."""
    from trainer.train import shared_prefix, train

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:4])
    plain = train(_cfg(tiny_qwen2, data, tmp_path / "a", dropout=0.0))
    cached = train(_cfg(tiny_qwen2, data, tmp_path / "b", dropout=0.0, prefix_cache=True))
    assert cached.prefix_tokens > 100  # the system prompt and the task header
    assert abs(plain.first_loss - cached.first_loss) < 1e-4, (plain.losses, cached.losses)
    assert plain.trained_tokens == cached.trained_tokens and plain.tokens == cached.tokens
    # the prefix never reaches a trained token
    from trainer.train import load_examples

    examples = load_examples(transformers.AutoTokenizer.from_pretrained(tiny_qwen2), data, 1024)
    n = shared_prefix(examples)
    assert n == cached.prefix_tokens
    assert all(x == IGNORE for r in examples for x in r.labels[: n + 1])


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_bf16_autocast_steps_see_the_updated_weights(tiny_qwen2: Path, gold_records: list[Any],
                                                     tmp_path: Path, prefix_cache: bool) -> None:
    """autocast caches its bf16 casts of the weights: each step must see the update."""
    from trainer.train import train

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:3])
    runs = [train(_cfg(tiny_qwen2, data, tmp_path / f"lr{lr}", epochs=1, grad_accum=1,
                       dropout=0.0, lr=lr, precision="bf16", prefix_cache=prefix_cache))
            for lr in (1e-9, 5e-2)]
    frozen, moved = runs[0].losses, runs[1].losses
    assert runs[1].precision == "bf16"
    assert frozen[0] == pytest.approx(moved[0], abs=1e-6)  # the same weights at step 1
    # later steps read the same examples with different weights: different losses
    assert all(abs(a - b) > 1e-3 for a, b in zip(frozen[1:], moved[1:], strict=True)), runs


def test_gradient_checkpointing_gives_the_same_losses(
        tiny_qwen2: Path, gold_records: list[Any], tmp_path: Path) -> None:
    from edgeagent.errors import UserError
    from trainer.train import train

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:4])
    plain = train(_cfg(tiny_qwen2, data, tmp_path / "a", dropout=0.0))
    ckpt = train(_cfg(tiny_qwen2, data, tmp_path / "b", dropout=0.0,
                      gradient_checkpointing=True))
    assert ckpt.losses == pytest.approx(plain.losses, rel=1e-4)
    with pytest.raises(UserError, match="do not go together"):
        train(_cfg(tiny_qwen2, data, tmp_path / "c", gradient_checkpointing=True,
                   prefix_cache=True))


def test_training_resumes_from_its_checkpoint_exactly(
        tiny_qwen2: Path, gold_records: list[Any], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from edgeagent.errors import UserError
    from trainer.train import train

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:6])
    straight = train(_cfg(tiny_qwen2, data, tmp_path / "straight", epochs=2))
    assert straight.steps == 6
    out = tmp_path / "resumed"
    with pytest.raises(UserError, match="stopped after step 2/6"):
        train(_cfg(tiny_qwen2, data, out, epochs=2, max_steps=2))
    assert (out / "checkpoint" / "trainer_state.pt").exists()
    assert not (out / "adapter_model.safetensors").exists()
    with pytest.raises(UserError, match="different run"):  # other settings: refused
        train(_cfg(tiny_qwen2, data, out, epochs=2, lr=1e-3))
    resumed = train(_cfg(tiny_qwen2, data, out, epochs=2))
    assert resumed.resumed_from == 2
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4, abs=1e-5)
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 6
    assert not (out / "checkpoint").exists()  # done: the checkpoint is gone
    png = out / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_out_of_memory_is_advice_not_a_traceback(
        tiny_qwen2: Path, gold_records: list[Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import torch.nn.functional as F

    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:2])

    def oom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 9999999 bytes")

    monkeypatch.setattr(F, "cross_entropy", oom)
    code = main(["distill", "train", "--model", str(tiny_qwen2), "--data", str(data),
                 "--out", str(tmp_path / "lora"), "--rank", "4", "--max-len", "1024"])
    err = capsys.readouterr().err
    assert code != 0
    assert "out of memory" in err and "--gradient-checkpointing" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_accelerate_ddp_on_two_cpu_processes_matches_one_process(
        tiny_qwen2: Path, gold_records: list[Any], tmp_path: Path) -> None:
    """Data parallel with 2 CPU processes (torchrun, gloo): the same losses as one process.

    `accelerate launch` with the shipped GPU configs starts the processes through the
    same torch.distributed launcher; on a CPU-only machine torchrun does it directly.
    """
    import socket
    import subprocess
    import sys

    from trainer.train import train

    pytest.importorskip("accelerate")
    data = tmp_path / "traj.jsonl"
    append_records(data, gold_records[:6])
    one = train(_cfg(tiny_qwen2, data, tmp_path / "one", dropout=0.0, grad_accum=3))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(port), "-m", "edgeagent",
           "distill", "train", "--model", str(tiny_qwen2), "--data", str(data), "--out", str(out),
           "--epochs", "1", "--lr", "3e-2", "--rank", "4", "--alpha", "8", "--dropout", "0",
           "--grad-accum", "3", "--max-len", "1024", "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2
    assert summary["tokens"] == one.tokens and summary["trained_tokens"] == one.trained_tokens
    assert summary["losses"] == pytest.approx(one.losses, rel=1e-3), (summary["losses"],
                                                                       one.losses)
    assert (out / "adapter_model.safetensors").exists()
    assert not list(out.glob(".train_log.rank*"))


# --------------------------------------------------------------------------- several students


def test_ties_trims_elects_and_averages() -> None:
    from trainer.combine import ties

    a = torch.tensor([4.0, -1.0, 0.2, -3.0])
    b = torch.tensor([2.0, 3.0, -0.1, -1.0])
    c = torch.tensor([-1.0, 2.0, 0.3, 0.5])
    # density 1: sign of the sum, mean of the agreeing entries
    got = ties([a, b, c], density=1.0)
    assert torch.allclose(got, torch.tensor([3.0, 2.5, 0.25, -2.0]))
    # density 0.5: each keeps its 2 largest magnitudes first
    got = ties([a, b, c], density=0.5)  # a: 4, -3; b: 2, 3; c: -1, 2
    assert torch.allclose(got, torch.tensor([3.0, 2.5, 0.0, -3.0]))


def _random_adapter(model_dir: Path, out: Path, seed: int, rank: int) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank,
                                                 target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.save_pretrained(out)
    return out


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_merging_several_adapters(tiny_qwen2: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a = _random_adapter(tiny_qwen2, tmp_path / "a", seed=1, rank=4)
    b = _random_adapter(tiny_qwen2, tmp_path / "b", seed=2, rank=8)  # ranks may differ
    for name, adapter in (("ma", a), ("mb", b)):
        assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapter", str(adapter),
                     "--out", str(tmp_path / name)]) == 0
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2).state_dict()
    wa, wb = _weights(tmp_path / "ma"), _weights(tmp_path / "mb")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(wa[key], base[key])

    assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapters", f"{a},{b}",
                 "--weights", "0.25,0.75", "--out", str(tmp_path / "lin")]) == 0
    assert "combined 2 adapters (linear)" in capsys.readouterr().out
    lin = _weights(tmp_path / "lin")
    for k in (key, "model.layers.1.mlp.down_proj.weight"):
        # W + .25 dA + .75 dB == .25 (W + dA) + .75 (W + dB)
        assert torch.allclose(lin[k], 0.25 * wa[k] + 0.75 * wb[k], atol=1e-6)

    assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapters", f"{a},{a}",
                 "--combine", "ties", "--density", "1", "--weights", "1,1",
                 "--out", str(tmp_path / "same")]) == 0
    assert torch.allclose(_weights(tmp_path / "same")[key], wa[key], atol=1e-6)
    assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapters", f"{a},{b}",
                 "--combine", "ties", "--out", str(tmp_path / "ties")]) == 0
    info = json.loads((tmp_path / "ties" / "merge_info.json").read_text())
    assert info["method"] == "ties" and info["density"] == 0.5
    capsys.readouterr()
    assert main(["distill", "merge", "--base", str(tiny_qwen2), "--adapters", f"{a},{b}",
                 "--weights", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "2 adapters but 1 weights" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
