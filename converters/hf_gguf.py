"""Convert a Hugging Face safetensors model directory to one GGUF file.

`convert_to_gguf(model_dir, out, outtype=...)` plans every tensor first (names,
shapes and output types from the safetensors headers), writes the GGUF header,
metadata and tensor table, then streams the tensor data one tensor at a time:
read (memory-mapped), transform (llama's rotary permutation), cast or quantize,
write, drop. Peak memory is about one tensor in float32. The file appears
atomically; the streaming itself is `gguf_write`.

Output types: f32, f16, bf16 (matrices; 1-D tensors such as norms and biases
always stay f32) and q8_0 (matrices whose rows are a multiple of 32; others
fall back to f16). For the K-quants and Q4_0 use `quantize_gguf` on an F16
file. Not covered: split GGUF output, LoRA adapters, vocab-only files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gguf

from converters.archs import ArchSpec, detect_arch
from converters.gguf_write import Array, Progress, TensorOut, write_gguf
from converters.hf_dir import HFModelDir
from converters.tokenizer_meta import build_tokenizer_meta
from edgeagent.errors import UserError

OUTTYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


@dataclass(frozen=True)
class ConvertResult:
    """What was written."""

    path: Path
    arch: str
    outtype: str
    n_tensors: int
    n_bytes: int
    seconds: float
    type_counts: dict[str, int]
    notes: tuple[str, ...] = ()


def _choose_type(
    gguf_name: str, shape: tuple[int, ...], want: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    if len(shape) <= 1 or gguf_name == "rope_freqs.weight":
        return gguf.GGMLQuantizationType.F32
    if want in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                gguf.GGMLQuantizationType.BF16):
        return want
    block = gguf.GGML_QUANT_SIZES[want][0]
    if shape[-1] % block != 0:
        return gguf.GGMLQuantizationType.F16
    return want


def _plan(model: HFModelDir, spec: ArchSpec, want: gguf.GGMLQuantizationType) -> list[TensorOut]:
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, spec.n_layers)
    plan: list[TensorOut] = []
    seen: set[str] = set()
    for ref in model.iter_refs():
        name = spec.map_name(ref.name, tmap)
        if name is None:
            continue
        if name in seen:
            raise UserError(f"two tensors map to {name}; is the checkpoint duplicated?")
        seen.add(name)

        def load(ref_name: str = ref.name, gguf_name: str = name) -> Array:
            return spec.transform(gguf_name, model.load(ref_name))

        plan.append(TensorOut(name, load, ref.shape, _choose_type(name, ref.shape, want)))
    for name, make in spec.extra_tensors():
        shape = make().shape
        plan.append(TensorOut(name, make, tuple(shape), gguf.GGMLQuantizationType.F32))
    if "token_embd.weight" not in seen:
        raise UserError(f"{model.path} has no embedding tensor (model.embed_tokens.weight)")
    return plan


def convert_to_gguf(
    model_dir: Path | str,
    out: Path | str,
    *,
    outtype: str = "f16",
    name: str | None = None,
    tokenizer_pre: str | None = None,
    progress: Progress | None = None,
) -> ConvertResult:
    """Write `out` (GGUF) from the HF model in `model_dir`."""
    started = time.perf_counter()
    if outtype not in OUTTYPES:
        raise UserError(f"unknown output type {outtype!r}; choose from {', '.join(OUTTYPES)}")
    want, ftype = OUTTYPES[outtype]
    model = HFModelDir.open(model_dir)
    arch = detect_arch(model.config)
    spec = ArchSpec(arch, model.config)
    tok = build_tokenizer_meta(model.path, model.config, pre=tokenizer_pre)
    plan = _plan(model, spec, want)

    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or model.path.resolve().name)
    writer.add_source_url(model.path.resolve().as_uri())  # `models add` records it
    writer.add_file_type(int(ftype))
    if want not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    spec.write_hparams(writer)
    tok.write(writer)
    out = Path(out)
    counts = write_gguf(writer, out, plan, progress)
    return ConvertResult(
        path=out,
        arch=arch,
        outtype=outtype,
        n_tensors=len(plan),
        n_bytes=out.stat().st_size,
        seconds=time.perf_counter() - started,
        type_counts=counts,
        notes=tuple(tok.notes),
    )
