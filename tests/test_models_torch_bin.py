"""converters/torch_pickle.py: PyTorch `.bin` state dicts read without torch — the tensors
torch.save writes (dtypes, views, shared storage) come back equal, and a pickle that
names any other global is refused without running it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters.torch_pickle import load_state_dict
from edgeagent.errors import UserError


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("touch pwned",))


def test_a_pickle_with_other_globals_is_refused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "adapter_model.bin"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Boom()}))
    with pytest.raises(UserError, match="refusing global"):
        load_state_dict(bad)
    assert not (tmp_path / "pwned").exists()
    legacy = tmp_path / "legacy.bin"
    legacy.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(UserError, match="not a PyTorch zip checkpoint"):
        load_state_dict(legacy)


def test_tensors_torch_saved_come_back_equal(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=gen)
    state = {
        "f32": base.clone(),
        "f16": base.half(),
        "bf16": base.to(torch.bfloat16),
        "transposed": base.t(),  # a strided view
        "row": base[2],  # shares storage with "f32"-like data, with an offset
        "ints": torch.arange(5, dtype=torch.int64),
    }
    path = tmp_path / "adapter_model.bin"
    torch.save(state, path)
    got = load_state_dict(path)
    assert set(got) == set(state)
    for name, tensor in state.items():
        array, _dtype = got[name]
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert array.shape == tuple(tensor.shape), name
        np.testing.assert_array_equal(array, want, err_msg=name)
    assert got["bf16"][1] == "BF16" and got["f16"][1] == "F16" and got["ints"][1] == "I64"


def test_a_tensor_read_whole_is_used_as_is_whatever_its_dtype(tmp_path: Path) -> None:
    """A .bin adapter's F32 tensor must not be re-read from the file as raw safetensors
    bytes (a merge once let the plain-float fast path win over the array)."""
    import numpy as np

    from converters.hf_dir import TensorRef, _load_tensor

    blob = tmp_path / "adapter_model.bin"
    blob.write_bytes(b"PK\x03\x04" + bytes(64))  # a zip, not safetensors
    for dtype, array in (("F32", np.arange(6, dtype=np.float32).reshape(2, 3)),
                         ("F16", np.ones((2, 2), dtype=np.float16))):
        ref = TensorRef(name="w", file=blob, shape=array.shape, dtype=dtype, array=array)
        assert np.array_equal(_load_tensor(ref), array)
