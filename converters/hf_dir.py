"""Read a Hugging Face model directory without loading the model.

`HFModelDir.open(path)` checks what is there (config.json, safetensors, single
file or sharded with `model.safetensors.index.json`), refuses a LoRA adapter
directory with a hint, and gives lazy access to tensors: names, shapes and
dtypes come from the safetensors headers, and `load(name)` reads one tensor
(through `safetensors.safe_open`, memory-mapped) as a numpy array. Peak memory
is therefore about one tensor.

Not covered: PyTorch `.bin` checkpoints (pickle; save with safetensors),
GGUF inputs, remote repositories.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeagent.errors import UserError

# safetensors dtype names -> bytes per element
_DTYPE_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1,
}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a one-line UserError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives, and its shape/dtype from the header."""

    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name, e.g. "BF16"
    data_start: int = 0  # absolute file offset of the tensor's bytes
    # the tensor itself, for weights read whole (a PyTorch .bin adapter); not compared
    array: np.ndarray[Any, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * _DTYPE_SIZES.get(self.dtype, 4)


@dataclass
class HFModelDir:
    """A model directory: its config and a lazy index of its tensors."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, TensorRef] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str) -> HFModelDir:
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if not path.is_dir():
            raise UserError(f"{path} is not a directory (expected a Hugging Face model directory)")
        if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
            raise UserError(
                f"{path} holds a LoRA adapter, not a model; merge it into its base first "
                "(edgeagent distill merge) and convert the merged directory"
            )
        if not (path / "config.json").exists():
            raise UserError(f"{path} has no config.json; is it a Hugging Face model directory?")
        config = read_json(path / "config.json")
        model = cls(path=path, config=config)
        model.tensors = _index_tensors(path)
        return model

    def tensor_names(self) -> list[str]:
        return list(self.tensors)

    def load(self, name: str) -> np.ndarray[Any, Any]:
        """One tensor as a numpy array (bf16 widened to float32)."""
        ref = self.tensors[name]
        return _load_tensor(ref)

    def total_bytes(self) -> int:
        return sum(ref.nbytes for ref in self.tensors.values())

    def iter_refs(self) -> Iterator[TensorRef]:
        yield from self.tensors.values()


def _index_tensors(path: Path) -> dict[str, TensorRef]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError(f"{index} has no weight_map")
        files = sorted({str(v) for v in weight_map.values()})
    else:
        files = sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise UserError(
                f"{path} holds PyTorch .bin weights; save the model with safetensors "
                "(model.save_pretrained(dir, safe_serialization=True))"
            )
        raise UserError(f"{path} has no *.safetensors weights")
    refs: dict[str, TensorRef] = {}
    for fname in files:
        file = path / fname
        if not file.exists():
            raise UserError(f"{file} is missing (listed in model.safetensors.index.json)")
        for name, (shape, dtype, start) in _read_header(file).items():
            refs[name] = TensorRef(name=name, file=file, shape=shape, dtype=dtype, data_start=start)
    return refs


def _read_header(file: Path) -> dict[str, tuple[tuple[int, ...], str, int]]:
    """Tensor shapes and dtypes from a safetensors header (no tensor data read)."""
    try:
        with file.open("rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError("file too short")
            size = int.from_bytes(head, "little")
            if size <= 0 or size > 100 * 1024 * 1024:
                raise ValueError("bad header size")
            header = json.loads(f.read(size))
    except (OSError, ValueError) as exc:
        raise UserError(f"{file} is not a readable safetensors file: {exc}") from None
    out: dict[str, tuple[tuple[int, ...], str, int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start = 8 + size + int(info["data_offsets"][0])
        out[name] = (tuple(int(d) for d in info["shape"]), str(info["dtype"]), start)
    return out


_PLAIN_DTYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2"}


def _load_tensor(ref: TensorRef) -> np.ndarray[Any, Any]:
    if ref.array is not None:  # read whole already (a PyTorch .bin adapter)
        return ref.array
    if ref.dtype in _PLAIN_DTYPES:
        # Little-endian float32/float16 bytes as they lie in the file: no safetensors
        # library needed (the app converts the embedding model without it).
        count = int(np.prod(ref.shape, dtype=np.int64))
        mapped = np.memmap(ref.file, dtype=_PLAIN_DTYPES[ref.dtype], mode="r",
                           offset=ref.data_start, shape=(count,))
        plain = np.array(mapped).reshape(ref.shape)
        del mapped
        return plain
    from safetensors import safe_open

    if ref.dtype == "BF16":
        # numpy has no bfloat16 (safe_open's numpy backend refuses it): map the
        # raw bits and widen to float32, which is exact.
        count = int(np.prod(ref.shape, dtype=np.int64))
        raw = np.memmap(ref.file, dtype="<u2", mode="r", offset=ref.data_start, shape=(count,))
        wide = (raw.astype(np.uint32) << 16).view(np.float32)
        del raw
        return wide.reshape(ref.shape)
    with safe_open(str(ref.file), framework="numpy") as f:
        tensor: np.ndarray[Any, Any] = f.get_tensor(ref.name)
        return tensor
