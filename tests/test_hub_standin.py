"""The stand-in Hub (tests/hub_standin.py) against the real `huggingface_hub`: model and
dataset repos, listings, downloads, range requests, and the errors the library types."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_standin import HubStandin

hf = pytest.importorskip("huggingface_hub")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubStandin]:
    root = tmp_path / "hub"
    model = root / "models" / "org" / "m"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "w.gguf").write_bytes(os.urandom(300_000))
    (model / "sub" / "notes.txt").write_text("x")
    data = root / "datasets" / "org" / "d"
    (data / "data").mkdir(parents=True)
    (data / "data" / "train.parquet").write_bytes(os.urandom(5_000))
    (data / "README.md").write_text("# d")
    (root / "models" / "org" / "gated").mkdir(parents=True)
    (root / "models" / "org" / "gated" / "a.txt").write_text("secret")
    with HubStandin(root, gated={"org/gated"}, token="hf_test") as server:
        yield server


def test_listing_and_info_for_models_and_datasets(hub: HubStandin) -> None:
    api = hf.HfApi(endpoint=hub.url, token=False)
    info = api.model_info("org/m", files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {"config.json": 23, "sub/notes.txt": 1, "w.gguf": 300_000}
    (gguf,) = [s for s in info.siblings if s.rfilename == "w.gguf"]
    data = (hub.root / "models/org/m/w.gguf").read_bytes()
    assert gguf.lfs is not None and gguf.lfs.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(api.list_repo_files("org/d", repo_type="dataset")) == [
        "README.md", "data/train.parquet"]
    (entry,) = api.get_paths_info("org/m", ["w.gguf"])
    assert entry.size == 300_000
    ds = api.dataset_info("org/d")
    assert ds.sha and len(ds.sha) == 40


def test_downloads_land_in_the_cache_and_match(hub: HubStandin, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = hf.hf_hub_download("org/m", "w.gguf", endpoint=hub.url, cache_dir=cache, token=False)
    assert Path(path).read_bytes() == (hub.root / "models/org/m/w.gguf").read_bytes()
    snap = hf.snapshot_download("org/d", repo_type="dataset", endpoint=hub.url, cache_dir=cache,
                                token=False)
    assert (Path(snap) / "data" / "train.parquet").stat().st_size == 5_000
    assert "datasets--org--d" in snap


def test_range_requests_are_answered_with_206(hub: HubStandin) -> None:
    import httpx

    url = f"{hub.url}/org/m/resolve/main/w.gguf"
    head = httpx.head(url)
    assert head.headers["x-repo-commit"] and head.headers["content-length"] == "300000"
    assert head.headers["etag"].strip('"') == hashlib.sha256(
        (hub.root / "models/org/m/w.gguf").read_bytes()).hexdigest()
    part = httpx.get(url, headers={"Range": "bytes=299990-"})
    assert part.status_code == 206 and len(part.content) == 10
    assert part.headers["content-range"] == "bytes 299990-299999/300000"
    assert httpx.get(url, headers={"Range": "bytes=400000-"}).status_code == 416


def test_errors_are_the_librarys_typed_errors(hub: HubStandin, tmp_path: Path) -> None:
    from huggingface_hub import errors

    api = hf.HfApi(endpoint=hub.url, token=False)
    with pytest.raises(errors.RepositoryNotFoundError):
        api.model_info("org/nope")
    with pytest.raises(errors.RemoteEntryNotFoundError):
        hf.hf_hub_download("org/m", "nope.txt", endpoint=hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(errors.RevisionNotFoundError):
        api.model_info("org/m", revision="v9")
    with pytest.raises(errors.GatedRepoError):
        hf.hf_hub_download("org/gated", "a.txt", endpoint=hub.url, cache_dir=tmp_path,
                           token=False)
    path = hf.hf_hub_download("org/gated", "a.txt", endpoint=hub.url, cache_dir=tmp_path,
                              token="hf_test")
    assert Path(path).read_text() == "secret"
    assert hub.requests[-1].authorization == "Bearer hf_test"
