"""`distill merge`: fold a LoRA adapter into its base and save a plain model.

Writes `out/` with `model.safetensors` (+ `config.json`, generation config),
the tokenizer and chat template (the adapter's copy when it has one, else the
base's): a directory that `edgeagent convert gguf` takes as is. The merged
weights keep the base's dtype (fp32 on CPU, or `dtype="float16"|"bfloat16"`).
A 4- or 8-bit base is refused (merging into quantized weights loses the
adapter); a GGUF base is dequantized by transformers and saved unquantized.
An adapter that does not fit the base (other architecture or sizes) is a
`UserError` naming both. The output appears atomically (temp dir, rename).

`merge_adapters` folds several students into one base: their weight deltas are
combined linearly or with TIES (`trainer.combine`) and added to the base.

Not covered: pushing to the Hub, DARE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.atomic import atomic_folder
from edgeagent.errors import UserError

DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class MergeResult:
    path: Path
    parameters: int
    dtype: str


def merge(base: str, adapter: Path, out: Path, *, dtype: str | None = None) -> MergeResult:
    from peft import PeftModel

    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"{adapter} is not a LoRA adapter (no adapter_config.json)")
    model = _load_base(base, dtype)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter))
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"the adapter {adapter} does not fit the base {base}: {first}") from None
    merged: Any = peft_model.merge_and_unload()
    tok_src = str(adapter) if (adapter / "tokenizer_config.json").exists() else base
    return _save(merged, tok_src, out, {"base": str(base), "adapter": str(adapter)})


def _load_base(base: str, dtype: str | None) -> Any:
    import torch

    from trainer.hf import load_model, quantized_bits

    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}")
    model = load_model(base, dtype=getattr(torch, dtype) if dtype else None, device="cpu")
    bits = quantized_bits(model)
    if bits is not None:
        raise UserError(f"the base is {bits}-bit quantized: merging into quantized weights "
                        "would lose the adapter; load a fp16/bf16/fp32 base")
    return model


def _save(merged: Any, tok_src: str, out: Path, info: dict[str, Any]) -> MergeResult:
    from trainer.hf import load_tokenizer, strip_quantizer

    strip_quantizer(merged)
    tokenizer = load_tokenizer(tok_src)
    out = out.expanduser()
    with atomic_folder(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "merge_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    n = sum(p.numel() for p in merged.parameters())
    return MergeResult(out, n, str(next(merged.parameters()).dtype).removeprefix("torch."))


def merge_adapters(base: str, adapters: list[Path], out: Path, *,
                   weights: list[float] | None = None, method: str = "linear",
                   density: float = 0.5, dtype: str | None = None) -> MergeResult:
    """Several adapters of one base, combined (linear or TIES) and merged into it."""
    from trainer.combine import apply_deltas, combine, lora_deltas

    deltas = [lora_deltas(a) for a in adapters]
    combined = combine(deltas, weights, method, density)
    model = _load_base(base, dtype)
    apply_deltas(model, combined)
    first = adapters[0]
    tok_src = str(first) if (first / "tokenizer_config.json").exists() else base
    return _save(model, tok_src, out, {
        "base": str(base), "adapters": [str(a) for a in adapters], "method": method,
        "weights": weights, "density": density if method == "ties" else None})
