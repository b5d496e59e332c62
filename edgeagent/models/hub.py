"""Downloads from the Hugging Face Hub, through `huggingface_hub`.

Everything goes through the library: the endpoint is `HF_ENDPOINT` (a mirror
or a test server), the token `HF_TOKEN` (or the one `hf auth login` saved),
and files land in the shared Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`,
default ~/.cache/huggingface/hub), so a model that llama.cpp, transformers or
LM Studio users already have is not downloaded twice. The environment is read
at call time, not when `huggingface_hub` is imported.

One addition: `huggingface_hub` keeps a partial download only within one
process (a killed download starts over). `fetch` therefore writes the blob
itself, with the library's `http_get`, to `blobs/<etag>.edgeagent-partial`
in the cache, resumes it with a Range request after a crash, checks the
sha256 of LFS files against their ETag, and only then moves it to
`blobs/<etag>`; `hf_hub_download` then links it into the snapshot. Free disk
space is checked before anything is written.

Errors become one-line `UserError`s with exit code 3: no network, unknown
repo/file/revision, gated repo without a token, disk too small, bad checksum.
Not covered: uploads, Xet-only storage without HTTP fallback, private mirrors
needing other auth than a bearer token.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError

DEFAULT_ENDPOINT = "https://huggingface.co"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# (bytes done, bytes total or None, file name)
ByteProgress = Callable[[int, int | None, str], None]


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo, from the listing."""

    path: str
    size: int
    sha256: str | None  # LFS files only


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def token() -> str | None:
    """`HF_TOKEN`, else None (the library then uses a token saved by `hf auth login`)."""
    return os.environ.get("HF_TOKEN") or None


def cache_dir() -> Path:
    """The shared Hugging Face hub cache, as `huggingface_hub` resolves it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _is_network_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"TransportError", "ConnectError", "TimeoutException", "NetworkError",
                         "OfflineModeIsEnabled", "ConnectionError", "ProtocolError"})


@contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn `huggingface_hub` and network failures into one-line UserErrors (exit 3)."""
    from huggingface_hub import errors

    try:
        yield
    except UserError:
        raise
    except errors.GatedRepoError:
        hint = ("HF_TOKEN is set but has no access: accept the license on the repo's page"
                if token() else "set HF_TOKEN to a token that has accepted its license")
        raise UserError(f"{what} is a gated repo; {hint}", exit_code=3) from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"{what}: no such repo on {endpoint()} (or it is private; set HF_TOKEN)",
                        exit_code=3) from None
    except errors.RevisionNotFoundError:
        raise UserError(f"{what}: no such revision on {endpoint()}", exit_code=3) from None
    except errors.RemoteEntryNotFoundError:
        raise UserError(f"{what}: no such file on {endpoint()}", exit_code=3) from None
    except errors.LocalEntryNotFoundError:
        raise UserError(f"cannot reach {endpoint()} for {what} (no network?) and it is not "
                        "in the Hugging Face cache", exit_code=3) from None
    except errors.HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what}: {endpoint()} answered {first}", exit_code=3) from None
    except Exception as exc:
        if _is_network_error(exc):
            raise UserError(f"cannot reach {endpoint()} for {what} (no network?): "
                            f"{type(exc).__name__}", exit_code=3) from None
        raise


def _api() -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint(), token=token())


def list_files(repo: str, *, repo_type: str = "model", revision: str | None = None
               ) -> tuple[str, list[RepoFile]]:
    """The repo's commit sha and its files (with sizes and LFS sha256)."""
    with hub_errors(repo):
        info = _api().repo_info(repo, repo_type=repo_type, revision=revision,
                                files_metadata=True)
    files = []
    for s in info.siblings or []:
        sha = s.lfs.sha256 if s.lfs is not None else None
        size = s.lfs.size if s.lfs is not None else (s.size or 0)
        files.append(RepoFile(s.rfilename, int(size or 0), sha))
    return str(info.sha or revision or "main"), files


def check_disk(needed: int, where: Path) -> None:
    """A UserError before a download that would not fit on the disk holding `where`."""
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise UserError(f"not enough disk space: need {needed / 1e9:.2f} GB in {where}, "
                        f"{free / 1e9:.2f} GB free", exit_code=3)


def _bar_class(progress: ByteProgress | None, name: str, offset: list[int]) -> type:
    """A tqdm-like class `http_get` drives, forwarding to `progress`."""

    class Bar:
        def __init__(self, total: int | None = None, initial: int = 0, **_: Any) -> None:
            self.total = total
            self.n = initial

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int) -> None:
            self.n += n
            if progress is not None:
                progress(offset[0] + self.n, None, name)

        def close(self) -> None:
            return None

    return Bar


def fetch(repo: str, filename: str, *, repo_type: str = "model", revision: str = "main",
          progress: ByteProgress | None = None) -> Path:
    """Download one file (resuming a partial one) into the HF cache; its snapshot path."""
    from huggingface_hub import file_download, hf_hub_download, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    cache = cache_dir()
    what = f"{repo}/{filename}"
    with hub_errors(what):
        url = hf_hub_url(repo, filename, repo_type=repo_type, revision=revision,
                         endpoint=endpoint())
        meta = file_download.get_hf_file_metadata(url, token=token(), endpoint=endpoint())
        etag = meta.etag
        if not etag or not meta.commit_hash:
            raise UserError(f"{what}: {endpoint()} sent no ETag/commit; is it a Hub?",
                            exit_code=3)
        storage = cache / file_download.repo_folder_name(repo_id=repo, repo_type=repo_type)
        blob = storage / "blobs" / etag
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            part = blob.with_name(f"{etag}.edgeagent-partial")
            have = part.stat().st_size if part.exists() else 0
            if meta.size is not None:
                check_disk(max(meta.size - have, 0), blob.parent)
            offset = [0]
            with part.open("r+b" if have else "wb") as out:
                out.seek(have)
                file_download.http_get(
                    meta.location, out, resume_size=have, expected_size=meta.size,
                    headers=build_hf_headers(token=token()), displayed_filename=filename,
                    tqdm_class=_bar_class(progress, filename, offset),
                )
            if _HEX64.match(etag):
                from edgeagent.wheelfetch import sha256_file

                digest = sha256_file(part)
                if digest != etag:
                    part.unlink(missing_ok=True)
                    raise UserError(f"checksum mismatch for {what}: expected {etag}, got "
                                    f"{digest}; the download was discarded", exit_code=3)
            os.replace(part, blob)
        path = hf_hub_download(repo, filename, repo_type=repo_type, revision=revision,
                               cache_dir=cache, endpoint=endpoint(), token=token())
    return Path(path)


def fetch_many(repo: str, files: list[RepoFile], *, repo_type: str = "model",
               revision: str = "main", progress: ByteProgress | None = None) -> Path:
    """Download `files` of `repo` (total size checked first); the snapshot directory."""
    from huggingface_hub.file_download import repo_folder_name

    total = sum(f.size for f in files)
    blobs = cache_dir() / repo_folder_name(repo_id=repo, repo_type=repo_type) / "blobs"
    check_disk(sum(f.size for f in files if not (f.sha256 and (blobs / f.sha256).exists())),
               cache_dir())
    done = 0
    last: Path | None = None
    for f in files:
        def forward(n: int, _total: int | None, name: str, base: int = done) -> None:
            if progress is not None:
                progress(base + n, total, name)

        last = fetch(repo, f.path, repo_type=repo_type, revision=revision, progress=forward)
        done += f.size
        if progress is not None:
            progress(done, total, f.path)
    if last is None:
        raise UserError(f"{repo}: nothing to download", exit_code=3)
    depth = len(Path(files[-1].path).parts)
    return last.parents[depth - 1]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`owner/name[:FILE]` -> (repo, file or None)."""
    repo, _, file = spec.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise UserError(f"expected REPO[:FILE] with REPO like owner/name, or a catalog name; "
                        f"got {spec!r}")
    return repo, (file or None)
