"""`edgeagent models pull REPO[:FILE]`: a GGUF from the Hugging Face Hub.

The endpoint is `HF_ENDPOINT` (default https://huggingface.co), so a mirror
or a test server works the same. Without FILE, the repo's file list
(`/api/models/REPO?blobs=true`) is read and a GGUF picked (Q4_K_M, then Q4_0,
Q8_0, else the smallest). The download goes to `<cache>/downloads/*.part`,
resumes with an HTTP Range request after an interruption, shows a progress
bar, and is checked against the sha256 the Hub publishes (the LFS oid in the
file list, or the `X-Linked-Etag` header) before it is moved into the models
dir — the data dir never holds a partial or unverified file.

Not covered: gated repos beyond a token in `HF_TOKEN`, non-GGUF weights.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx

from edgeagent import locations
from edgeagent.errors import UserError
from edgeagent.wheelfetch import sha256_file

PREFERRED = ("Q4_K_M", "Q4_0", "Q8_0")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def parse_spec(spec: str) -> tuple[str, str | None]:
    repo, _, file = spec.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UserError(f"expected REPO[:FILE] with REPO like owner/name, got {spec!r}")
    return repo, (file or None)


def _client() -> httpx.Client:
    token = os.environ.get("HF_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(headers=headers, timeout=httpx.Timeout(60.0, connect=10.0),
                        follow_redirects=True)


def _get_json(client: httpx.Client, url: str) -> Any:
    try:
        resp = client.get(url)
    except httpx.TransportError as exc:
        raise UserError(f"cannot reach {endpoint()} (no network?): {exc}", exit_code=3) from None
    if resp.status_code in (401, 403, 404):
        raise UserError(f"not found or not allowed on {endpoint()}: {url.split('/api/')[-1]}",
                        exit_code=3)
    if resp.status_code >= 400:
        raise UserError(f"{url} answered {resp.status_code}", exit_code=3)
    try:
        return resp.json()
    except ValueError:
        raise UserError(f"{url} did not return JSON", exit_code=3) from None


def list_gguf(client: httpx.Client, repo: str) -> dict[str, dict[str, Any]]:
    """GGUF files of `repo`: name -> {size, sha256}."""
    data = _get_json(client, f"{endpoint()}/api/models/{repo}?blobs=true")
    files: dict[str, dict[str, Any]] = {}
    for sib in data.get("siblings") or []:
        name = sib.get("rfilename", "")
        if name.lower().endswith(".gguf"):
            lfs = sib.get("lfs") or {}
            files[name] = {"size": lfs.get("size") or sib.get("size"), "sha256": lfs.get("sha256")}
    return files


def choose_file(files: dict[str, dict[str, Any]]) -> str:
    if not files:
        raise UserError("the repo has no .gguf files; name one with REPO:FILE")
    for q in PREFERRED:
        for name in sorted(files):
            if q.lower() in name.lower():
                return name
    return min(files, key=lambda f: files[f].get("size") or 0)


def pull(spec: str, *, show_progress: bool = True) -> tuple[Path, str | None]:
    """Download `spec` into the models dir; return (path, sha256 checked)."""
    repo, file = parse_spec(spec)
    with _client() as client:
        expected: str | None = None
        if file is None:
            files = list_gguf(client, repo)
            file = choose_file(files)
            expected = files[file].get("sha256")
        elif not file.lower().endswith(".gguf"):
            raise UserError(f"{file} is not a .gguf file")
        else:
            try:
                expected = list_gguf(client, repo).get(file, {}).get("sha256")
            except UserError:
                expected = None  # listing is optional when the file is named
        dest = locations.models_dir() / Path(file).name
        downloads = locations.ensure(locations.cache_dir() / "downloads")
        part = downloads / f"{repo.replace('/', '--')}--{Path(file).name}.part"
        url = f"{endpoint()}/{repo}/resolve/main/{file}"
        expected = _download(client, url, part, expected, show_progress)
    digest = sha256_file(part)
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {file}: expected {expected}, got {digest}; "
                        "the download was discarded", exit_code=3)
    locations.ensure(dest.parent)
    os.replace(part, dest)
    return dest, digest


def _download(client: httpx.Client, url: str, part: Path, expected: str | None,
              show_progress: bool) -> str | None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 416 and have:  # already complete
                return expected
            if resp.status_code in (401, 403, 404):
                raise UserError(f"not found on {endpoint()}: {url.split('/resolve/')[0]}",
                                exit_code=3)
            if resp.status_code >= 400:
                raise UserError(f"{url} answered {resp.status_code}", exit_code=3)
            linked = (resp.headers.get("x-linked-etag") or "").strip('"').removeprefix("W/")
            linked = linked.strip('"')
            if expected is None and _HEX64.match(linked):
                expected = linked
            mode = "ab" if resp.status_code == 206 else "wb"
            if mode == "wb":
                have = 0
            length = resp.headers.get("content-length")
            total = have + int(length) if length and length.isdigit() else None
            label = url.rsplit("/", 1)[-1]
            with part.open(mode) as out, _progress(show_progress, label, total) as advance:
                advance(have)
                for chunk in resp.iter_bytes():
                    out.write(chunk)
                    advance(len(chunk))
    except httpx.TransportError as exc:
        got = part.stat().st_size if part.exists() else 0
        raise UserError(f"download from {endpoint()} failed ({exc or type(exc).__name__}); "
                        f"{got} bytes kept, run the same command to resume", exit_code=3) from None
    return expected


class _progress:
    """A rich progress bar on stderr, or nothing; used as `with … as advance`."""

    def __init__(self, enabled: bool, label: str, total: int | None) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled or not sys.stderr.isatty():
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                             DownloadColumn(), TransferSpeedColumn(),
                             console=Console(stderr=True), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total)
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
