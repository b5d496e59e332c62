"""Stream planned tensors into one GGUF file: `write_gguf(writer, out, tensors)`.

The caller fills a `gguf.GGUFWriter(path=None, …)` with its metadata (model or
adapter keys, tokenizer) and plans every tensor as a `TensorOut` (GGUF name,
numpy-order shape, output type, and a `load()` that returns the float data).
`write_gguf` records the tensor table, then writes the header, metadata and
table to a temp file beside `out` and streams the tensors one at a time:
load, check the shape against the table, cast (F32/F16) or quantize (BF16,
Q8_0), write, drop. Peak memory is about one tensor. `out` appears atomically
(`edgeagent.atomic`); `progress(done_bytes, total_bytes, name)` is called after
each tensor. Not covered: planning (hf_gguf, lora_gguf), split files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from edgeagent.atomic import atomic_output
from edgeagent.errors import UserError

Array = np.ndarray[Any, Any]
Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, tensor name)

_FLOATS = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}


@dataclass(frozen=True)
class TensorOut:
    """One tensor to write: its GGUF name, how to load it, its shape and output type."""

    name: str
    load: Callable[[], Array]
    shape: tuple[int, ...]  # numpy order
    qtype: gguf.GGMLQuantizationType
    raw: bool = False  # load() returns the encoded bytes (uint8), not floats


def nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> int:
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape, dtype=np.int64)) // block * type_size


def encode(data: Array, qtype: gguf.GGMLQuantizationType) -> Array:
    """`data` as the bytes of `qtype`: a cast for F32/F16, gguf's quantizer otherwise."""
    if qtype in _FLOATS:
        return np.ascontiguousarray(data, dtype=_FLOATS[qtype])
    return gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)


def write_gguf(writer: gguf.GGUFWriter, out: Path, tensors: Sequence[TensorOut],
               progress: Progress | None = None) -> dict[str, int]:
    """Write the file; returns how many tensors of each type it holds."""
    for t in tensors:
        size = nbytes(t.shape, t.qtype)
        if t.qtype in _FLOATS:
            writer.add_tensor_info(t.name, t.shape, np.dtype(_FLOATS[t.qtype]), size)
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(t.shape, t.qtype)
            writer.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), size,
                                   raw_dtype=t.qtype)
    total = sum(nbytes(t.shape, t.qtype) for t in tensors)
    done = 0
    counts: dict[str, int] = {}
    with atomic_output(out) as tmp:
        try:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for t in tensors:
                data = t.load()
                if t.raw:
                    if data.dtype != np.uint8 or data.nbytes != nbytes(t.shape, t.qtype):
                        raise UserError(f"{t.name}: {data.nbytes} raw bytes, not the "
                                        f"{nbytes(t.shape, t.qtype)} of {t.shape} {t.qtype.name}")
                    encoded = data.reshape(-1)
                else:
                    if tuple(data.shape) != t.shape:
                        raise UserError(
                            f"{t.name}: shape {data.shape} differs from its header {t.shape}")
                    encoded = encode(data, t.qtype)
                del data
                writer.write_tensor_data(encoded)
                done += encoded.nbytes
                del encoded
                counts[t.qtype.name] = counts.get(t.qtype.name, 0) + 1
                if progress is not None:
                    progress(done, total, t.name)
        finally:
            writer.close()
    return counts
