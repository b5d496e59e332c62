"""Convert a peft LoRA adapter directory to a llama.cpp LoRA GGUF file.

`convert_lora_to_gguf(adapter_dir, base, out)` reads `adapter_config.json`
and `adapter_model.safetensors` (as `peft`'s `save_pretrained` and our trainer
write them) and, for the architecture, the tensor names and the shapes, the
base model: a Hugging Face directory (`config.json` and safetensors headers)
or the base's GGUF file (its header), as the trainer may start from either. No
base weights are read. It writes a GGUF with `general.type = "adapter"`, `adapter.type = "lora"`,
`adapter.lora.alpha` and `general.architecture` of the base, and one pair of
tensors per adapted matrix, named after the base tensor's GGUF name:

- `<name>.lora_a`: peft's `lora_A.weight`, numpy shape `[r, n_in]`
- `<name>.lora_b`: peft's `lora_B.weight`, numpy shape `[n_out, r]`

llama.cpp computes `W x + s * alpha / r * B (A x)` with `s` the scale given at
load time. peft's own scale (`lora_alpha / r`, `/ sqrt(r)` with rsLoRA, or a
per-module `alpha_pattern`) is matched exactly: where it differs from
`alpha / r`, the ratio is folded into `lora_b`. llama's q/k rotary permutation
is applied to the rows of `lora_b` (the output dimension), as to the base
weight. The file appears atomically.

Not covered (each refused in one line, naming what was found): DoRA,
`modules_to_save`, LoRA on the token embedding, trainable tokens, LoRA biases,
activated LoRA, other peft methods, LoRA on a tied `lm_head`, PyTorch `.bin`
adapters. Merge such adapters (`edgeagent distill merge`) and convert the
merged model instead.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from converters.archs import ArchSpec, detect_arch
from converters.gguf_write import Array, Progress, TensorOut, write_gguf
from converters.hf_dir import HFModelDir, TensorRef, _read_header, read_json
from edgeagent.errors import UserError

LORA_OUTTYPES: dict[str, tuple[gguf.LlamaFileType, gguf.GGMLQuantizationType]] = {
    "f32": (gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16),
}

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# adapter_config.json flags that change what the adapter computes beyond
# `W + s * B A`: refused, with the name users know them by
_UNSUPPORTED_FLAGS: dict[str, str] = {
    "use_dora": "DoRA (use_dora)",
    "modules_to_save": "full module copies (modules_to_save)",
    "trainable_token_indices": "trainable tokens (trainable_token_indices)",
    "lora_bias": "LoRA biases (lora_bias)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
    "use_qalora": "QA-LoRA (use_qalora)",
    "layer_replication": "layer replication (layer_replication)",
    "target_parameters": "LoRA on parameters (target_parameters)",
    "fan_in_fan_out": "transposed Conv1D weights (fan_in_fan_out)",
}
# substrings of tensor names that betray an unsupported part
_UNSUPPORTED_TENSORS: dict[str, str] = {
    "lora_magnitude_vector": "DoRA (lora_magnitude_vector)",
    "modules_to_save": "full module copies (modules_to_save)",
    "lora_embedding_A": "LoRA on the token embedding (lora_embedding_A/B)",
    "lora_embedding_B": "LoRA on the token embedding (lora_embedding_A/B)",
    "trainable_tokens": "trainable tokens",
}
_MERGE_HINT = "merge it (edgeagent distill merge) and convert the merged model instead"

# "base_model.model.<module>.lora_A[.<adapter name>].weight"
_KEY_RE = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$"
)


@dataclass(frozen=True)
class LoraResult:
    """What was written."""

    path: Path
    arch: str
    outtype: str
    rank: int  # the largest rank (rank_pattern may vary it per module)
    alpha: float
    n_pairs: int  # adapted matrices
    n_bytes: int
    seconds: float
    notes: tuple[str, ...] = ()


@dataclass
class _Base:
    """What the conversion needs from the base model: its architecture and matrix shapes."""

    path: Path
    spec: ArchSpec
    shapes: dict[str, tuple[int, ...]]  # GGUF tensor name -> numpy shape


def _open_base(base: Path | str) -> _Base:
    """The base from a Hugging Face model directory or a GGUF file."""
    path = Path(base)
    if path.is_file() and path.suffix == ".gguf":
        return _base_from_gguf(path)
    model = HFModelDir.open(path)
    spec = ArchSpec(detect_arch(model.config), model.config)
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, spec.n_layers)
    shapes: dict[str, tuple[int, ...]] = {}
    for ref in model.iter_refs():
        name = spec.map_name(ref.name, tmap)
        if name is not None:
            shapes[name] = ref.shape
    return _Base(path, spec, shapes)


def _base_from_gguf(path: Path) -> _Base:
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    if field("general.type") == "adapter":
        raise UserError(f"{path} is a LoRA adapter, not a base model")
    arch = str(field("general.architecture") or "")
    detect_arch({"model_type": arch})  # a UserError for architectures we do not handle
    n_layers, n_head = field(f"{arch}.block_count"), field(f"{arch}.attention.head_count")
    if n_layers is None or n_head is None:
        raise UserError(f"{path} lacks {arch}.block_count or {arch}.attention.head_count")
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    config = {
        "model_type": arch,
        "num_hidden_layers": int(n_layers),
        "num_attention_heads": int(n_head),
        "num_key_value_heads": int(field(f"{arch}.attention.head_count_kv") or n_head),
        "tie_word_embeddings": "output.weight" not in shapes,
    }
    return _Base(path, ArchSpec(arch, config), shapes)


@dataclass
class _Pair:
    module: str  # HF module name, e.g. model.layers.0.self_attn.q_proj
    gguf_name: str  # base tensor's GGUF name, e.g. blk.0.attn_q.weight
    a: TensorRef
    b: TensorRef
    factor: float  # folded into lora_b so that llama.cpp's alpha / r gives peft's scale


def read_adapter(adapter_dir: Path | str) -> tuple[dict[str, Any], dict[str, TensorRef]]:
    """The adapter's config and tensor index, or a one-line UserError saying what is wrong."""
    path = Path(adapter_dir)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if not path.is_dir():
        raise UserError(f"{path} is not a directory (expected a peft LoRA adapter directory)")
    if not (path / ADAPTER_CONFIG).exists():
        if (path / "config.json").exists():
            raise UserError(
                f"{path} is a model, not a LoRA adapter (no {ADAPTER_CONFIG}); "
                "convert it with `edgeagent convert gguf`, or pass it as --base"
            )
        raise UserError(f"{path} has no {ADAPTER_CONFIG}; is it a peft LoRA adapter directory?")
    config = read_json(path / ADAPTER_CONFIG)
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise UserError(f"{path} is a {kind} adapter; only LoRA adapters can be converted")
    for key, what in _UNSUPPORTED_FLAGS.items():
        if config.get(key):
            raise UserError(f"{path}: {what} is not supported in llama.cpp LoRA files; "
                            f"{_MERGE_HINT}")
    weights = path / ADAPTER_WEIGHTS
    if not weights.exists():
        if (path / "adapter_model.bin").exists():
            raise UserError(f"{path} holds PyTorch adapter_model.bin weights; save the adapter "
                            "with safetensors (save_pretrained(dir, safe_serialization=True))")
        raise UserError(f"{weights} is missing")
    refs = {
        name: TensorRef(name=name, file=weights, shape=shape, dtype=dtype, data_start=start)
        for name, (shape, dtype, start) in _read_header(weights).items()
    }
    for name in refs:
        for part, what in _UNSUPPORTED_TENSORS.items():
            if part in name:
                raise UserError(f"{path}: {what} is not supported in llama.cpp LoRA files "
                                f"(tensor {name}); {_MERGE_HINT}")
    return config, refs


def _pattern_value(patterns: Any, module: str) -> Any:
    """peft's per-module override (`alpha_pattern` / `rank_pattern`) for `module`, or None."""
    if not isinstance(patterns, dict):
        return None
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def _plan(
    adapter_dir: Path, config: dict[str, Any], refs: dict[str, TensorRef], base: _Base,
    alpha: float,
) -> list[_Pair]:
    halves: dict[str, dict[str, TensorRef]] = {}
    for name, ref in refs.items():
        m = _KEY_RE.match(name)
        if m is None:
            raise UserError(f"{adapter_dir}: tensor {name} is not a LoRA A/B matrix; {_MERGE_HINT}")
        halves.setdefault(m.group("module"), {})[m.group("ab")] = ref
    if not halves:
        raise UserError(f"{adapter_dir / ADAPTER_WEIGHTS} holds no LoRA tensors")
    spec = base.spec
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, spec.n_layers)
    rslora = bool(config.get("use_rslora"))
    pairs: list[_Pair] = []
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            missing = "lora_B" if "A" in ab else "lora_A"
            raise UserError(f"{adapter_dir}: {module} has no {missing} tensor")
        a, b = ab["A"], ab["B"]
        try:
            gguf_name = spec.map_name(f"{module}.weight", tmap)
        except UserError:
            gguf_name = ""
        if gguf_name is None:
            raise UserError(f"the adapter adapts {module}, which the base ties to the token "
                            f"embedding; llama.cpp cannot apply that; {_MERGE_HINT}")
        base_shape = base.shapes.get(gguf_name)
        if base_shape is None:
            raise UserError(f"the adapter adapts {module}, which {base.path} does not have; "
                            "is the base the model it was trained on?")
        if len(base_shape) != 2 or len(a.shape) != 2 or len(b.shape) != 2:
            raise UserError(f"{module}: LoRA needs 2-D weights (base {base_shape}, "
                            f"A {a.shape}, B {b.shape})")
        n_out, n_in = base_shape
        rank = a.shape[0]
        if a.shape[1] != n_in or b.shape[0] != n_out or b.shape[1] != rank:
            raise UserError(
                f"the adapter does not fit {base.path}: {module} is {n_out}x{n_in} there, but "
                f"its LoRA is B {b.shape[0]}x{b.shape[1]} · A {a.shape[0]}x{a.shape[1]}; "
                "wrong base model?"
            )
        module_alpha = _pattern_value(config.get("alpha_pattern"), module)
        m_alpha = float(module_alpha) if module_alpha is not None else alpha
        peft_scale = m_alpha / math.sqrt(rank) if rslora else m_alpha / rank
        llama_scale = alpha / rank if alpha else 1.0
        pairs.append(_Pair(module, gguf_name, a, b, peft_scale / llama_scale))
    return pairs


def convert_lora_to_gguf(
    adapter_dir: Path | str,
    base: Path | str,
    out: Path | str,
    *,
    outtype: str = "f16",
    name: str | None = None,
    progress: Progress | None = None,
) -> LoraResult:
    """Write `out` (a llama.cpp LoRA GGUF) from the peft adapter in `adapter_dir` for
    `base` (a Hugging Face model directory or the base's GGUF file)."""
    started = time.perf_counter()
    if outtype not in LORA_OUTTYPES:
        raise UserError(f"unknown output type {outtype!r}; choose from {', '.join(LORA_OUTTYPES)}")
    ftype, qtype = LORA_OUTTYPES[outtype]
    adapter_dir = Path(adapter_dir)
    config, refs = read_adapter(adapter_dir)
    base_model = _open_base(base)
    spec = base_model.spec
    arch = spec.arch
    try:
        alpha = float(config.get("lora_alpha", 8))  # peft's default
    except (TypeError, ValueError):
        raise UserError(f"{adapter_dir / ADAPTER_CONFIG}: lora_alpha is not a number") from None
    pairs = _plan(adapter_dir, config, refs, base_model, alpha)
    reader = HFModelDir(path=adapter_dir, config=config, tensors=refs)
    notes: list[str] = []
    if any(abs(p.factor - 1.0) > 1e-12 for p in pairs):
        notes.append("peft's scale differs from alpha / r for some modules (rsLoRA or "
                     "alpha_pattern): the ratio is folded into lora_b")

    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_name(name or adapter_dir.resolve().name)
    writer.add_file_type(int(ftype))
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)

    def load_a(p: _Pair) -> Callable[[], Array]:
        return lambda: reader.load(p.a.name)

    def load_b(p: _Pair) -> Callable[[], Array]:
        def load() -> Array:
            b = reader.load(p.b.name).astype(np.float32)
            if abs(p.factor - 1.0) > 1e-12:
                b = b * np.float32(p.factor)
            return spec.transform(p.gguf_name, b)

        return load

    tensors: list[TensorOut] = []
    for p in pairs:
        tensors.append(TensorOut(f"{p.gguf_name}.lora_a", load_a(p), p.a.shape, qtype))
        tensors.append(TensorOut(f"{p.gguf_name}.lora_b", load_b(p), p.b.shape, qtype))
    out = Path(out)
    write_gguf(writer, out, tensors, progress)
    return LoraResult(
        path=out,
        arch=arch,
        outtype=outtype,
        rank=max(p.a.shape[0] for p in pairs),
        alpha=alpha,
        n_pairs=len(pairs),
        n_bytes=out.stat().st_size,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )
