"""Loading a base model and tokenizer for training or merging (torch/transformers here).

`--model` / `--base` may be a Hugging Face checkpoint directory, a Hub id
(resolved by transformers, from its cache when offline), a `.gguf` file, or a
directory holding exactly one `.gguf` (transformers dequantizes it to fp32;
`strip_quantizer` then makes the model savable as plain safetensors).

Not covered: 4-bit/8-bit bases (bitsandbytes) — refused for merging.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError


def _source(path: str, *, tokenizer: bool = False) -> tuple[str, dict[str, Any]]:
    p = Path(path).expanduser()
    if tokenizer and p.is_dir() and (p / "tokenizer_config.json").exists():
        return str(p), {}
    if p.is_file() and p.suffix == ".gguf":
        return str(p.parent), {"gguf_file": p.name}
    if p.is_dir():
        if (p / "config.json").exists():
            return str(p), {}
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(p), {"gguf_file": ggufs[0].name}
        raise UserError(f"{p} has no config.json (and not exactly one .gguf): not a model")
    if p.exists():
        raise UserError(f"{p} is neither a model directory nor a .gguf file")
    if "/" in path and not path.startswith((".", "/", "~")):
        return path, {}  # a Hub id
    raise UserError(f"model not found: {path}")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    src, kw = _source(path, tokenizer=True)
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot load a tokenizer from {path}: {first}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, *, dtype: Any = None, device: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    src, kw = _source(path)
    device = device or default_device()
    if dtype is None:
        dtype = (torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported()
                 else torch.float32)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kw)
        if not hasattr(model, "to"):
            raise ValueError("not a causal LM")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a model from {path}: {str(exc).splitlines()[0]}") from None
    return model.to(device)  # type: ignore[arg-type]


def quantized_bits(model: Any) -> int | None:
    """4 or 8 for a bitsandbytes-quantized model, else None (GGUF bases are dequantized)."""
    q = getattr(model.config, "quantization_config", None)
    if q is None:
        return None
    get = q.get if isinstance(q, dict) else lambda k, d=None: getattr(q, k, d)
    if get("load_in_4bit", False):
        return 4
    if get("load_in_8bit", False):
        return 8
    return None


def strip_quantizer(model: Any) -> None:
    """Forget a GGUF base's quantizer so `save_pretrained` writes plain weights."""
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        model.config.quantization_config = None
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(AttributeError):
            model.is_quantized = False
