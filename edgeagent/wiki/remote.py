"""A file of a Hugging Face dataset repo, read as a stream that is never stored.

`resolve(repo, filename, revision)` asks the Hub (through `huggingface_hub`,
so `HF_ENDPOINT` mirrors and `HF_TOKEN` apply) for the commit the revision
points to and the file's size and LFS sha256. `HubStream` is a raw binary
stream over `GET …/resolve/<commit>/<file>`: it counts and hashes the bytes it
delivers, and when the connection drops mid-file it asks again from where it
stopped (`Range: bytes=N-`, a few times with back-off), so a 5 GB download
survives a flaky link without starting over. At the end of the file `verified`
says whether the sha256 matched.

Every failure (no network, unknown repo or file, gated repo without a token,
a server error) is a one-line `UserError` with exit code 3.

Not covered: storing the file (the caller streams it into an index), Xet
transfers (a plain HTTP GET of the resolve URL works on every Hub).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from dataclasses import dataclass
from typing import Any

from edgeagent.errors import UserError

RETRIES = 5
CHUNK = 1 << 20


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@dataclass(frozen=True)
class HubFile:
    """One file of a dataset repo at a fixed commit."""

    repo: str
    filename: str
    revision: str  # what was asked for (a branch, tag or commit)
    commit: str  # the commit it resolved to
    size: int | None
    sha256: str | None
    url: str


def hub_error(exc: BaseException, what: str, hint: str = "") -> UserError:
    """A one-line error for a failed Hub call about `what` (`hint` ends it, when given)."""
    error = _hub_error(exc, what)
    if hint:
        return UserError(f"{error}; {hint}", exit_code=error.exit_code)
    return error


def _hub_error(exc: BaseException, what: str) -> UserError:
    name = type(exc).__name__
    if name == "GatedRepoError":
        return UserError(f"{what} is gated: accept its terms on the Hub and set HF_TOKEN",
                         exit_code=3)
    if name == "RepositoryNotFoundError":
        return UserError(f"{what}: no such dataset repo on {endpoint()} (or it is private: "
                         "set HF_TOKEN)", exit_code=3)
    if name == "RevisionNotFoundError":
        return UserError(f"{what}: no such revision on {endpoint()}", exit_code=3)
    if name in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return UserError(f"{what}: no such file in the repo", exit_code=3)
    if name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError"):
        return UserError(f"{what}: not in the local cache and the Hub cannot be reached "
                         "(offline?)", exit_code=3)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return UserError(f"{what}: {endpoint()} answered HTTP {status}", exit_code=3)
    detail = str(exc).splitlines()[0] if str(exc) else name
    return UserError(f"cannot reach {endpoint()} for {what} (no network?): {detail}",
                     exit_code=3)


def probe(what: str, hint: str = "") -> None:
    """Fail at once, in one line, when the endpoint cannot be reached at all."""
    import httpx

    try:
        httpx.head(endpoint(), timeout=httpx.Timeout(10.0, connect=5.0))
    except httpx.TransportError as exc:
        raise hub_error(exc, what, hint) from None


def _lfs_sha256(sibling: Any) -> str | None:
    lfs = getattr(sibling, "lfs", None)
    if lfs is None:
        return None
    value = getattr(lfs, "sha256", None)
    if value is None and isinstance(lfs, dict):
        value = lfs.get("sha256")
    return str(value) if value else None


def resolve(repo: str, filename: str, revision: str = "main") -> HubFile:
    """Commit, size and sha256 of `filename` in dataset `repo` at `revision`."""
    from huggingface_hub import HfApi, hf_hub_url

    what = f"{repo}@{revision}:{filename}"
    try:
        info = HfApi(endpoint=endpoint()).dataset_info(repo, revision=revision,
                                                       files_metadata=True)
    except Exception as exc:
        raise hub_error(exc, what) from None
    for sibling in info.siblings or []:
        if sibling.rfilename == filename:
            commit = str(info.sha or revision)
            url = hf_hub_url(repo, filename, repo_type="dataset", revision=commit,
                             endpoint=endpoint())
            return HubFile(repo, filename, revision, commit, sibling.size,
                           _lfs_sha256(sibling), url)
    names = ", ".join(s.rfilename for s in (info.siblings or [])[:8]) or "none"
    raise UserError(f"{what}: no such file in the repo (files: {names})", exit_code=3)


class HubStream(io.RawIOBase):
    """The bytes of a `HubFile`, streamed from the start; see the module docstring."""

    def __init__(self, file: HubFile, *, timeout: float = 60.0) -> None:
        super().__init__()
        import httpx
        from huggingface_hub.utils import build_hf_headers

        self.file = file
        self.pos = 0
        self._hash = hashlib.sha256()
        self._client = httpx.Client(headers=build_hf_headers(), follow_redirects=True,
                                    timeout=httpx.Timeout(timeout, connect=15.0))
        self._response: Any = None
        self._chunks: Any = None
        self._pending = b""
        self._eof = False
        self.verified: bool | None = None

    # -- io.RawIOBase --------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._next(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.closed:
            return
        try:
            # A tar's end blocks or a gzip trailer may be left unread: finish the digest
            # when only a little is left, so a complete read can be verified.
            size = self.file.size
            if size is not None and not self._eof and 0 <= size - self.pos <= 4 * CHUNK:
                while self._next(CHUNK):
                    pass
        except UserError:
            pass
        finally:
            self._disconnect()
            self._client.close()
            super().close()

    # -- transfer ------------------------------------------------------------------

    def _disconnect(self) -> None:
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.close()
        self._response = None
        self._chunks = None

    def _connect(self) -> None:
        import httpx

        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        what = f"{self.file.repo}:{self.file.filename}"
        try:
            request = self._client.build_request("GET", self.file.url, headers=headers)
            response = self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise hub_error(exc, what) from None
        if response.status_code in (401, 403):
            response.close()
            raise UserError(f"{what}: not allowed (gated or private: set HF_TOKEN)", exit_code=3)
        if response.status_code == 404:
            response.close()
            raise UserError(f"{what}: not found on {endpoint()}", exit_code=3)
        if response.status_code >= 400:
            response.close()
            raise UserError(f"{what}: {endpoint()} answered HTTP {response.status_code}",
                            exit_code=3)
        chunks = response.iter_raw(1 << 16)
        if self.pos and response.status_code != 206:
            skip = self.pos  # the server ignored the Range header: drop what we have
            while skip > 0:
                block = next(chunks, b"")
                if not block:
                    break
                if len(block) > skip:
                    self._pending = block[skip:]
                skip -= len(block)
        self._response = response
        self._chunks = chunks

    def _next(self, n: int) -> bytes:
        """Up to `n` bytes (b"" at the end of the file)."""
        import httpx

        if self._eof:
            return b""
        attempt = 0
        while not self._pending:
            if self._chunks is None:
                self._connect()
                if self._pending:
                    break
            try:
                block = next(self._chunks, b"")
                size = self.file.size
                if not block and size is not None and self.pos < size:
                    raise httpx.RemoteProtocolError("the server closed the connection early")
            except httpx.HTTPError as exc:
                self._disconnect()
                attempt += 1
                if attempt > RETRIES:
                    raise UserError(
                        f"download of {self.file.filename} failed at byte {self.pos:,} after "
                        f"{RETRIES} retries ({type(exc).__name__}); run the same command again "
                        "to resume", exit_code=3) from None
                time.sleep(min(30.0, 0.5 * 2 ** attempt))
                continue
            if not block:
                self._finish()
                return b""
            self._pending = block
        data, self._pending = self._pending[:n], self._pending[n:]
        self.pos += len(data)
        self._hash.update(data)
        return data

    def _finish(self) -> None:
        self._eof = True
        self._disconnect()
        if self.file.sha256:
            self.verified = self._hash.hexdigest() == self.file.sha256

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
