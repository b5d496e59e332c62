"""A stand-in for the Hugging Face Hub: a local HTTP server that `huggingface_hub` talks to.

It serves a directory tree, one folder per repo:

    <root>/models/<org>/<name>/<files…>      model repos   (repo_type="model")
    <root>/datasets/<org>/<name>/<files…>    dataset repos (repo_type="dataset")

and implements the endpoints `huggingface_hub` (1.x/2.x) calls for downloads:

- `GET  /api/{models|datasets}/<repo>[/revision/<rev>]` repo info (`sha`, `siblings`;
  sizes and LFS sha256 with `?blobs=true`) — `model_info`, `dataset_info`, `repo_info`
- `GET  /api/{models|datasets}/<repo>/tree/<rev>[/<path>]` listing (`recursive=true`
  for the whole tree) — `list_repo_tree`, `list_repo_files`, `snapshot_download`
- `POST /api/{models|datasets}/<repo>/paths-info/<rev>` — `get_paths_info`
- `HEAD|GET /<repo>/resolve/<rev>/<path>` and `/datasets/<repo>/resolve/<rev>/<path>`:
  `ETag` (sha256 for LFS-like files, git blob sha1 otherwise), `X-Repo-Commit`,
  `Content-Length`, `Accept-Ranges`, and `Range: bytes=N-[M]` answered with 206 —
  `hf_hub_download` (including its resume of a `.incomplete` file)

Errors carry the Hub's `X-Error-Code` header so the library raises its own typed
errors: `RepoNotFound` (404), `EntryNotFound` (404), `RevisionNotFound` (404),
`GatedRepo` (401, for repos in `gated` requested without the right bearer token).

The revision is `main` or the repo's commit sha (a sha1 over its files, so it
changes when the files do). A file counts as LFS (sha256 ETag, `lfs` in the
listing) when its suffix is in `lfs_suffixes` or it is at least 10 MB, as on the Hub.

Usage (in a test; set `HF_ENDPOINT` to `hub.url` for code that reads the env var,
or pass `endpoint=hub.url` to `huggingface_hub` calls):

    from hub_standin import HubStandin
    (root / "models/org/tiny").mkdir(parents=True)
    (root / "models/org/tiny/model.gguf").write_bytes(data)
    with HubStandin(root) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        huggingface_hub.hf_hub_download("org/tiny", "model.gguf", endpoint=hub.url, …)
        assert hub.requests[-1].range is None

Knobs: `hub.delay_per_chunk` (seconds slept per 64 KiB sent, to make a download
slow enough to kill halfway), `hub.cut_after` (bytes after which the next file
body is cut off, once), `hub.requests` (method, path, range, authorization of
each request, for assertions). Not covered: uploads, Xet storage, redirects to a
CDN, pagination (listings come back in one page), repo types other than model
and dataset.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".parquet", ".arrow",
                ".zip", ".gz", ".zst", ".tar", ".whl", ".npy", ".onnx")
LFS_MIN_SIZE = 10_000_000
CHUNK = 64 * 1024
_TYPES = {"models": "model", "datasets": "dataset"}


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FileMeta:
    path: str  # relative to the repo root, with /
    size: int
    blob_id: str  # git blob sha1
    sha256: str | None  # set for LFS files


class HubStandin:
    """The server; `start()`/`stop()` or use it as a context manager. `url` is the endpoint."""

    def __init__(self, root: Path, *, gated: Iterable[str] = (), token: str = "hf_standin",
                 lfs_suffixes: tuple[str, ...] = LFS_SUFFIXES) -> None:
        self.root = Path(root)
        self.gated = set(gated)  # "org/name" (either repo type) needing `Bearer <token>`
        self.token = token
        self.lfs_suffixes = lfs_suffixes
        self.delay_per_chunk = 0.0
        self.cut_after: int | None = None
        self.requests: list[Request] = []
        self._meta: dict[tuple[Path, int, int], FileMeta] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in Hub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HubStandin:
        standin = self

        class Handler(_Handler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="hub-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- repo content ------------------------------------------------------
    def repo_dir(self, kind: str, repo: str) -> Path | None:
        """The folder of `repo` ("org/name") of `kind` ("models"/"datasets"), or None."""
        if repo.count("/") != 1 or ".." in repo.split("/"):
            return None
        path = self.root / kind / repo
        return path if path.is_dir() else None

    def files(self, repo_dir: Path) -> list[FileMeta]:
        out = []
        for p in sorted(repo_dir.rglob("*")):
            if p.is_file() and not any(part.startswith(".") and part != ".gitattributes"
                                       for part in p.relative_to(repo_dir).parts):
                out.append(self.meta(repo_dir, p))
        return out

    def meta(self, repo_dir: Path, path: Path) -> FileMeta:
        st = path.stat()
        key = (path, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._meta:
                return self._meta[key]
        data = path.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        lfs = path.suffix.lower() in self.lfs_suffixes or len(data) >= LFS_MIN_SIZE
        sha256 = hashlib.sha256(data).hexdigest() if lfs else None
        meta = FileMeta(path.relative_to(repo_dir).as_posix(), len(data), blob, sha256)
        with self._lock:
            self._meta[key] = meta
        return meta

    def commit(self, repo_dir: Path) -> str:
        h = hashlib.sha1()
        for m in self.files(repo_dir):
            h.update(f"{m.path}\0{m.blob_id}\n".encode())
        return h.hexdigest()


def _entry(m: FileMeta) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "file", "oid": m.blob_id, "size": m.size, "path": m.path}
    if m.sha256:
        e["lfs"] = {"oid": m.sha256, "size": m.size, "pointerSize": 134}
    return e


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    # -- plumbing ----------------------------------------------------------
    def _record(self, method: str) -> None:
        self.hub.requests.append(Request(method, self.path, self.headers.get("Range"),
                                         self.headers.get("Authorization")))

    def _send_json(self, data: Any, status: int = 200) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: str | None, message: str) -> None:
        raw = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)

    def _repo(self, kind: str, repo: str, rev: str | None) -> Path | None:
        """The repo folder after the checks a Hub makes; None after answering an error."""
        repo_dir = self.hub.repo_dir(kind, repo)
        if repo_dir is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if repo in self.hub.gated and (self.headers.get("Authorization")
                                       != f"Bearer {self.hub.token}"):
            self._error(401, "GatedRepo",
                        f"Access to model {repo} is restricted. You must have access to it "
                        "and be authenticated to access it. Please log in.")
            return None
        if rev is not None and rev not in ("main", self.hub.commit(repo_dir)):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo_dir

    # -- routes ------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._record("HEAD")
        self._route(body=False)

    def do_GET(self) -> None:
        self._record("GET")
        self._route(body=True)

    def do_POST(self) -> None:
        self._record("POST")
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        # api/<kind>/<org>/<name>/paths-info/<rev>
        if len(parts) == 6 and parts[0] == "api" and parts[1] in _TYPES \
                and parts[4] == "paths-info":
            repo_dir = self._repo(parts[1], f"{parts[2]}/{parts[3]}",
                                  urllib.parse.unquote(parts[5]))
            if repo_dir is None:
                return
            wanted = [p.strip("/") for p in form.get("paths", [])]
            out: list[dict[str, Any]] = []
            for w in wanted:
                target = repo_dir / w
                if target.is_file():
                    out.append(_entry(self.hub.meta(repo_dir, target)))
                elif target.is_dir():
                    out.append({"type": "directory", "oid": "0" * 40, "path": w})
            self._send_json(out)
            return
        self._error(404, None, "not found")

    def _route(self, body: bool) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(split.query)
        parts = [urllib.parse.unquote(p) for p in split.path.strip("/").split("/")]
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in _TYPES:
            kind, repo, rest = parts[1], f"{parts[2]}/{parts[3]}", parts[4:]
            if not rest or rest[0] == "revision":
                rev = rest[1] if len(rest) > 1 else None
                self._info(kind, repo, rev, blobs=query.get("blobs") == ["true"]
                           or query.get("blobs") == ["True"])
                return
            if rest[0] == "tree" and len(rest) >= 2:
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                self._tree(kind, repo, rest[1], "/".join(rest[2:]), recursive)
                return
        kind = "models"
        if parts[:1] == ["datasets"]:
            kind, parts = "datasets", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(kind, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), body)
            return
        self._error(404, None, "not found")

    def _info(self, kind: str, repo: str, rev: str | None, blobs: bool) -> None:
        repo_dir = self._repo(kind, repo, rev)
        if repo_dir is None:
            return
        siblings = []
        for m in self.hub.files(repo_dir):
            s: dict[str, Any] = {"rfilename": m.path}
            if blobs:
                s.update(size=m.size, blobId=m.blob_id)
                if m.sha256:
                    s["lfs"] = {"sha256": m.sha256, "size": m.size, "pointerSize": 134}
            siblings.append(s)
        self._send_json({
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo,
            "author": repo.split("/")[0], "sha": self.hub.commit(repo_dir),
            "private": False, "gated": "auto" if repo in self.hub.gated else False,
            "disabled": False, "lastModified": "2025-01-01T00:00:00.000Z",
            "tags": [], "siblings": siblings,
        })

    def _tree(self, kind: str, repo: str, rev: str, sub: str, recursive: bool) -> None:
        repo_dir = self._repo(kind, repo, rev)
        if repo_dir is None:
            return
        base = repo_dir / sub if sub else repo_dir
        if not base.is_dir():
            self._error(404, "EntryNotFound", f"{sub} does not exist on {rev}")
            return
        out: list[dict[str, Any]] = []
        children = sorted(base.rglob("*") if recursive else base.iterdir())
        for p in children:
            rel = p.relative_to(repo_dir).as_posix()
            if any(part.startswith(".") and part != ".gitattributes" for part in rel.split("/")):
                continue
            if p.is_dir():
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": rel})
            elif p.is_file():
                out.append(_entry(self.hub.meta(repo_dir, p)))
        self._send_json(out)

    def _resolve(self, kind: str, repo: str, rev: str, file: str, body: bool) -> None:
        repo_dir = self._repo(kind, repo, rev)
        if repo_dir is None:
            return
        target = repo_dir / file
        if ".." in file.split("/") or not target.is_file():
            self._error(404, "EntryNotFound", f"{file} does not exist on {rev}")
            return
        meta = self.hub.meta(repo_dir, target)
        size = meta.size
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        status = 200
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].split(",")[0].partition("-")
            start = int(first) if first else max(size - int(last or 0), 0)
            end = int(last) if (first and last) else size - 1
            end = min(end, size - 1)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("ETag", f'"{meta.sha256 or meta.blob_id}"')
        self.send_header("X-Repo-Commit", self.hub.commit(repo_dir))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        cut, self.hub.cut_after = self.hub.cut_after, None
        with target.open("rb") as f:
            f.seek(start)
            left, sent = end - start + 1, 0
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                if cut is not None and sent + len(chunk) > cut:
                    self.wfile.write(chunk[: cut - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                sent += len(chunk)
                left -= len(chunk)
                if self.hub.delay_per_chunk:
                    time.sleep(self.hub.delay_per_chunk)
