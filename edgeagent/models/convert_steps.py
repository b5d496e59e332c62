"""The conversion half of `models pull`: HF weights -> quantized, verified GGUF; adapters.

`build_gguf(hf_dir, quant, stem, report)` runs `convert gguf` (F16, into
`<cache>/convert/`, removed afterwards), `convert quantize` into the models dir
(skipped for F16/BF16/F32, written directly) and `convert verify` on one short
prompt: with transformers (the `train` extra) the token ids must match the
Hugging Face tokenizer's, and logits are compared when the float32 model fits
in a third of the free RAM; without it the step says so and only checks that
llama.cpp loads the file. A failed check deletes the output. `build_lora`
writes the adapter's LoRA GGUF next to it. Disk space is checked first.
Not covered: choosing an importance matrix for low-bit quants.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from edgeagent import locations
from edgeagent.errors import UserError
from edgeagent.models.hub import check_disk

Report = Callable[[str, float | None, str], None]
VERIFY_PROMPT = "The capital of France is"
_DIRECT = {"F16": "f16", "BF16": "bf16", "F32": "f32"}


def _weights_bytes(hf_dir: Path) -> int:
    return sum(p.stat().st_size for p in hf_dir.glob("*.safetensors"))


def build_gguf(hf_dir: Path, quant: str, name: str, report: Report,
               adapter: Path | None = None) -> Path:
    """`<models>/<name>.<quant>.gguf` from the model in `hf_dir` (merged with `adapter`)."""
    from converters import convert_to_gguf, quantize_gguf

    quant = quant.upper()
    models = locations.ensure(locations.models_dir())
    out = models / f"{name}.{quant}.gguf"
    weights = _weights_bytes(hf_dir)
    if quant in _DIRECT:
        check_disk(weights * 2, models)
        stage_out, outtype = out, _DIRECT[quant]
    else:
        work = locations.ensure(locations.cache_dir() / "convert")
        check_disk(weights * 2, work)
        check_disk(weights // 2, models)
        stage_out, outtype = work / f"{name}.F16.gguf", "f16"

    def converting(done: int, total: int, tensor: str) -> None:
        report("convert", done / total if total else None, tensor)

    convert_to_gguf(hf_dir, stage_out, outtype=outtype, name=name, progress=converting,
                    adapter=adapter)
    if stage_out != out:
        def quantizing(done: int, total: int, tensor: str) -> None:
            report("quantize", done / total if total else None, tensor)

        try:
            quantize_gguf(stage_out, quant, out=out, progress=quantizing)
        finally:
            stage_out.unlink(missing_ok=True)
    try:
        verify(hf_dir, out, report)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def verify(hf_dir: Path, gguf_path: Path, report: Report) -> None:
    """`convert verify` on one short prompt: token ids must match the model's tokenizer
    (needs transformers, the train extra); logits are compared too when the model is small
    enough to load in float32 alongside. Without transformers: a load check only."""
    report("verify", None, VERIFY_PROMPT)
    from converters.verify import token_ids

    ids = token_ids(hf_dir, gguf_path, VERIFY_PROMPT)
    if ids is None:
        report("verify", None, "token check skipped (needs the train extra); loading only")
        import llama_cpp

        from edgeagent.engines.llama_native import load_model

        llama_cpp.llama_model_free(load_model(gguf_path))
        return
    want, got = ids
    if got != want:
        raise UserError(f"verify failed: llama.cpp tokenizes {VERIFY_PROMPT!r} as {got}, the "
                        f"model's tokenizer as {want}; the converted file was discarded")
    from edgeagent.models.catalog import available_ram_mb

    free = available_ram_mb()
    f32_mb = _weights_bytes(hf_dir) * 2 // 1_000_000  # bf16/f16 weights, loaded as float32
    if free is None or f32_mb * 3 > free:
        report("verify", 1.0, "tokens identical (logits not compared: too big for free RAM)")
        return
    from converters import verify_gguf

    try:
        result = verify_gguf(hf_dir, gguf_path, prompts=[VERIFY_PROMPT])
    except UserError as exc:  # e.g. transformers without torch
        report("verify", 1.0, f"tokens identical (logits not compared: {exc})")
        return
    check = result.checks[0]
    report("verify", 1.0, f"tokens identical, top-1 agreement {check.top1_agree:.0%}")


def build_lora(adapter_dir: Path, base_gguf: Path, name: str, report: Report) -> Path:
    """The llama.cpp LoRA GGUF of the PEFT adapter in `adapter_dir`, for `base_gguf`."""
    from converters import convert_lora_to_gguf

    models = locations.ensure(locations.models_dir())
    out = models / f"{name}.lora.F16.gguf"
    size = sum(p.stat().st_size for p in adapter_dir.glob("adapter_model.*"))
    check_disk(size, models)

    def progress(done: int, total: int, tensor: str) -> None:
        report("adapter", done / total if total else None, tensor)

    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    convert_lora_to_gguf(adapter_dir, base_gguf, out, outtype="f16", name=name,
                         progress=progress)
    if not out.exists():
        raise UserError(f"the adapter conversion wrote nothing to {out}")
    return out
