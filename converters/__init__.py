"""Hugging Face checkpoints -> GGUF, quantization, and round-trip verification.

`convert_to_gguf` writes a GGUF file from a safetensors model directory with
our own writer on the `gguf` library (qwen2, llama, qwen3, bert), streaming one
tensor at a time. `convert_lora_to_gguf` writes a llama.cpp LoRA GGUF from a
peft adapter directory. `quantize_gguf` re-quantizes through llama.cpp, and
`verify_gguf` compares a GGUF against transformers on the same prompts.

Importing this package is light: torch, transformers and llama_cpp are only
imported by the functions that need them. Not covered here: DoRA and other
peft variants as GGUF (merge the adapter first), sentencepiece
(`tokenizer.model`) vocabularies, mixture-of-experts and multimodal
architectures.
"""

from __future__ import annotations

from converters.archs import SUPPORTED_ARCHITECTURES
from converters.hf_gguf import OUTTYPES, ConvertResult, convert_to_gguf
from converters.lora_gguf import LORA_OUTTYPES, LoraResult, convert_lora_to_gguf
from converters.quantize import QUANT_TYPES, QuantizeResult, quantize_gguf
from converters.verify import VerifyReport, verify_gguf

__all__ = [
    "LORA_OUTTYPES",
    "OUTTYPES",
    "QUANT_TYPES",
    "SUPPORTED_ARCHITECTURES",
    "ConvertResult",
    "LoraResult",
    "QuantizeResult",
    "VerifyReport",
    "convert_lora_to_gguf",
    "convert_to_gguf",
    "quantize_gguf",
    "verify_gguf",
]
