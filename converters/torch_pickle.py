"""Read a PyTorch `.bin` state dict (`torch.save` zip format) as numpy arrays, without torch.

`load_state_dict(path)` opens the zip, unpickles `data.pkl` with an
unpickler that only knows the handful of globals a plain state dict uses
(`torch._utils._rebuild_tensor_v2`, `_rebuild_parameter`, the typed storage
classes, `collections.OrderedDict`) and refuses every other global — so a
malicious pickle cannot run code — then maps each tensor's storage
(`<archive>/data/<key>`) to a numpy array with its offset, shape and strides.
bf16 is widened to float32 (exact).

Used for peft adapters saved without safetensors (`adapter_model.bin`, as the
paper's training script writes them). Not covered: the legacy (pre-1.6)
non-zip format, quantized or sparse tensors, tensor subclasses.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeagent.errors import UserError

# typed storage class name -> (numpy dtype, safetensors dtype name)
_STORAGES: dict[str, tuple[str, str]] = {
    "FloatStorage": ("<f4", "F32"), "HalfStorage": ("<f2", "F16"),
    "BFloat16Storage": ("<u2", "BF16"), "DoubleStorage": ("<f8", "F64"),
    "LongStorage": ("<i8", "I64"), "IntStorage": ("<i4", "I32"),
    "ShortStorage": ("<i2", "I16"), "CharStorage": ("i1", "I8"),
    "ByteStorage": ("u1", "U8"), "BoolStorage": ("?", "BOOL"),
}


class _Storage:
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key


class _Tensor:
    """A tensor as the pickle describes it; materialised by `_materialise`."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...],
                 stride: tuple[int, ...]) -> None:
        self.storage = storage
        self.offset = offset
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor_v2(storage: _Storage, offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], *_: Any) -> _Tensor:
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: _Tensor, *_: Any) -> _Tensor:
    return data


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        kind = pid[1]
        name = kind.name if isinstance(kind, _StorageType) else str(kind)
        if name not in _STORAGES:
            raise pickle.UnpicklingError(f"unsupported storage type {name}")
        return _Storage(name, str(pid[2]))


def _materialise(t: _Tensor, raw: bytes) -> np.ndarray[Any, Any]:
    np_dtype, _ = _STORAGES[t.storage.kind]
    flat = np.frombuffer(raw, dtype=np_dtype)
    itemsize = flat.itemsize
    count = int(np.prod(t.size, dtype=np.int64)) if t.size else 1
    if count == 0:
        out = np.zeros(t.size, dtype=np_dtype)
    else:
        span = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride, strict=True)) + 1
        if t.offset < 0 or span > flat.size:
            raise ValueError("tensor extends past its storage")
        out = np.lib.stride_tricks.as_strided(
            flat[t.offset:], shape=t.size, strides=tuple(st * itemsize for st in t.stride),
            writeable=False).copy()
    if t.storage.kind == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def load_state_dict(path: Path) -> dict[str, tuple[np.ndarray[Any, Any], str]]:
    """name -> (array, safetensors dtype name of the stored tensor), or a one-line UserError."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile):
        raise UserError(f"{path} is not a PyTorch zip checkpoint (legacy or damaged .bin); "
                        "save it again with torch>=1.6 or with safetensors") from None
    with zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise UserError(f"{path} has no data.pkl; not a torch.save checkpoint")
        prefix = pkl[: -len("data.pkl")]
        try:
            import io

            obj = _Unpickler(io.BytesIO(zf.read(pkl))).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
            raise UserError(f"{path}: unsafe or unsupported pickle ({exc})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path} does not hold a state dict")
        out: dict[str, tuple[np.ndarray[Any, Any], str]] = {}
        cache: dict[str, bytes] = {}
        for name, value in obj.items():
            if not isinstance(value, _Tensor):
                continue
            key = value.storage.key
            if key not in cache:
                try:
                    cache[key] = zf.read(f"{prefix}data/{key}")
                except KeyError:
                    raise UserError(f"{path}: storage {key} is missing") from None
            try:
                array = _materialise(value, cache[key])
            except ValueError as exc:
                raise UserError(f"{path}: tensor {name}: {exc}") from None
            out[str(name)] = (array, _STORAGES[value.storage.kind][1])
    return out
