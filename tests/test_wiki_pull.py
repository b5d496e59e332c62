"""`edgeagent wiki pull` against a stand-in Hub: both file formats, limits, checksums,
a pull killed with SIGKILL and resumed while the old index stays searchable, errors.

The corpus is real Wikipedia text from `../shared/data` in wiki-18's record format
(`tests/wiki18_corpus.py`); the Hub is `tests/hub_standin.py` on a loopback port,
reached through `HF_ENDPOINT` by a real `edgeagent` subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_standin import HubStandin
from proc_support import restore_sigint
from wiki18_corpus import write_corpus

from edgeagent.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
REPO = "PeterJinGo/wiki-18-corpus"
FILE = "wiki-18.jsonl.gz"


def _env(home: Path, endpoint: str) -> dict[str, str]:
    env = dict(os.environ, EDGEAGENT_HOME=str(home), HF_ENDPOINT=endpoint,
               HF_HOME=str(home / "hf"), PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_OFFLINE", None)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeagent", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


def _doc_ids(home: Path, name: str) -> list[str]:
    import tantivy

    folder = home / "data" / "wiki" / name
    meta = json.loads((folder / "wiki.json").read_text())
    index = tantivy.Index.open(str(folder / meta["generation"]))
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), limit=searcher.num_docs + 10).hits
    return sorted((str(searcher.doc(a).get_first("doc_id")) for _, a in hits), key=int)


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    (root / "datasets" / REPO).mkdir(parents=True)
    return root


@pytest.fixture
def hub(hub_root: Path) -> Iterator[HubStandin]:
    with HubStandin(hub_root) as standin:
        yield standin


@pytest.mark.parametrize("kind", ["gz", "tar.gz"])
def test_pull_limit_keeps_order_and_ids(kind: str, shared_data: Path, hub_root: Path,
                                        hub: HubStandin, tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 3000, kind)
    env = _env(tmp_path / "home", hub.url)
    r = _cli(env, "wiki", "pull", "--limit", "2000")
    assert r.returncode == 0, r.stderr
    # the estimate comes first, naming the commit, the passages, disk and time
    assert f"{REPO}@" in r.stderr and "the first 2,000 passages" in r.stderr
    assert "index ≈" in r.stderr and "free:" in r.stderr and "streamed" in r.stderr
    assert "pulled wiki index 'wiki-18': 2,000 passages" in r.stdout
    assert _doc_ids(tmp_path / "home", "wiki-18") == [str(n) for n in range(2000)]
    listing = _cli(env, "wiki", "list", "--json")
    meta = json.loads(listing.stdout)[0]
    assert meta["passages"] == 2000 and meta["extra"]["limit"] == 2000
    assert meta["extra"]["commit"] == hub.commit(hub_root / "datasets" / REPO)
    # a passage is found with its title and its corpus id
    line = json.loads(write_corpus(shared_data, tmp_path / "c.jsonl", 1500, "jsonl")
                       .read_text().splitlines()[1234])
    title = line["contents"].split("\n")[0].strip('"')
    words = " ".join(line["contents"].split("\n")[1].split()[:12])
    found = json.loads(_cli(env, "wiki", "search", "wiki-18", words, "-k", "3", "--json").stdout)
    assert any(h["doc_id"] == "1234" and h["title"] == title for h in found), found


def test_full_pull_is_checked_against_the_hub_sha256(shared_data: Path, hub_root: Path,
                                                     hub: HubStandin, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeagent.wiki import pull, store

    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 1200, "tar.gz")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    root = tmp_path / "wiki"
    meta = pull.run(pull.plan(root=root), root=root)
    assert meta.passages == 1200 and meta.extra["verified"] is True
    # bytes that do not match the published sha256 never go live
    plan = pull.plan(force=True, root=root)
    wrong = dataclasses.replace(plan, file=dataclasses.replace(plan.file, sha256="0" * 64))
    with pytest.raises(UserError, match="does not match the Hub's"):
        pull.run(wrong, force=True, root=root)
    live = store.read_meta("wiki-18", root)
    assert live is not None and live.generation == meta.generation  # the old index is live


def test_killed_pull_resumes_and_old_index_stays_searchable(
        shared_data: Path, hub_root: Path, hub: HubStandin, tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 30000, "gz")
    home = tmp_path / "home"
    env = _env(home, hub.url)
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"title": "Zanzibar Lighthouse Keeper",
                               "text": "A marmalade-coloured lighthouse on Zanzibar."}) + "\n")
    assert _cli(env, "wiki", "build", "wiki-18", "--from", str(old)).returncode == 0
    hub.delay_per_chunk = 0.15  # slow enough to be killed halfway
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "wiki", "pull", "--force", "--limit", "20000",
         "--checkpoint-every", "2000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    folder = home / "data" / "wiki" / "wiki-18"
    deadline = time.monotonic() + 240
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        states = list(folder.glob(".partial-*/pull-state.json"))
        if states:
            committed = int(json.loads(states[0].read_text()).get("committed", 0))
            if committed >= 4000:
                break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4000 <= committed < 20000
    # meanwhile the old index answers as before
    hits = _cli(env, "wiki", "search", "wiki-18", "marmalade lighthouse", "--json")
    assert json.loads(hits.stdout)[0]["title"] == "Zanzibar Lighthouse Keeper"
    hub.delay_per_chunk = 0.0
    again = _cli(env, "wiki", "pull", "--force", "--limit", "20000", "--checkpoint-every", "2000")
    assert again.returncode == 0, again.stderr
    assert "already indexed (re-read, not re-indexed)" in again.stderr
    assert "(resumed at " in again.stdout
    assert _doc_ids(home, "wiki-18") == [str(n) for n in range(20000)]  # no gaps, no repeats
    assert not list(folder.glob(".partial-*"))
    gone = json.loads(_cli(env, "wiki", "search", "wiki-18", "marmalade Zanzibar lighthouse",
                           "--json").stdout)
    assert all(h["title"] != "Zanzibar Lighthouse Keeper" for h in gone)


def test_restart_and_dry_run(shared_data: Path, hub_root: Path, hub: HubStandin,
                             tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 500, "gz")
    home = tmp_path / "home"
    env = _env(home, hub.url)
    dry = _cli(env, "wiki", "pull", "small", "--dry-run", "--limit", "100")
    assert dry.returncode == 0 and "the first 100 passages" in dry.stderr
    assert not (home / "data" / "wiki" / "small").exists()
    ok = _cli(env, "wiki", "pull", "small", "--restart", "--limit", "100")
    assert ok.returncode == 0 and "100 passages" in ok.stdout


@pytest.mark.parametrize("args, message", [
    (["--repo", "nobody/nothing"], "no such dataset repo"),
    (["--file", "missing.jsonl.gz"], "no such file in the repo"),
    (["--revision", "v9"], "no such revision"),
    (["--limit", "0"], "--limit must be a positive number"),
    (["bad/name"], "invalid index name"),
])
def test_pull_errors_are_one_line(args: list[str], message: str, shared_data: Path,
                                  hub_root: Path, hub: HubStandin, tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 50, "gz")
    r = _cli(_env(tmp_path / "home", hub.url), "wiki", "pull", *args)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_pull_without_network_is_one_line_exit_3(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    r = _cli(_env(tmp_path / "home", f"http://127.0.0.1:{port}"), "wiki", "pull")
    assert r.returncode == 3 and "cannot reach" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1


def test_existing_index_needs_force(shared_data: Path, hub_root: Path, hub: HubStandin,
                                    tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 50, "gz")
    env = _env(tmp_path / "home", hub.url)
    assert _cli(env, "wiki", "pull").returncode == 0
    r = _cli(env, "wiki", "pull")
    assert r.returncode == 2 and "already exists; use --force" in r.stderr


def test_local_gzip_of_tar_builds(shared_data: Path, tmp_path: Path) -> None:
    from edgeagent.wiki.build import build_from_file

    src = write_corpus(shared_data, tmp_path / "wiki-18.tar.gz", 300, "tar.gz")
    meta = build_from_file("tarred", src, root=tmp_path / "wiki")
    assert meta.passages == 300 and meta.format == "jsonl"


def test_dropped_connection_is_resumed_with_a_range_request(
        shared_data: Path, hub_root: Path, hub: HubStandin, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeagent.wiki import pull
    from edgeagent.wiki.build import BuildStatus

    corpus = write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 2000, "gz")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    root = tmp_path / "wiki"
    plan = pull.plan(root=root)
    hub.cut_after = 150_000  # the body stops there once; the client must ask for the rest
    seen: list[BuildStatus] = []
    meta = pull.run(plan, root=root, progress=seen.append)
    assert meta.passages == 2000 and meta.extra["verified"] is True
    ranges = [r.range for r in hub.requests if "/resolve/" in r.path and r.method == "GET"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1][6:].rstrip("-")) <= 150_000  # from where it stopped
    size = corpus.stat().st_size
    assert any(0 < s.bytes_read <= size for s in seen) and seen[-1].phase == "done"


def test_too_little_disk_is_refused_before_anything_starts(
        shared_data: Path, hub_root: Path, hub: HubStandin, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil as sh

    from edgeagent.wiki import pull

    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 50, "gz")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    real = sh.disk_usage
    monkeypatch.setattr(pull.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=1_000_000))
    plan = pull.plan(root=tmp_path / "wiki")
    assert "free: 1 MB" in plan.describe() and "21,015,324 passages" in plan.describe()
    with pytest.raises(UserError, match="not enough disk"):
        pull.run(plan, root=tmp_path / "wiki")
    assert not [r for r in hub.requests if "/resolve/" in r.path]  # nothing was downloaded


def test_ctrl_c_keeps_the_committed_part(shared_data: Path, hub_root: Path, hub: HubStandin,
                                         tmp_path: Path) -> None:
    write_corpus(shared_data, hub_root / "datasets" / REPO / FILE, 12000, "gz")
    home = tmp_path / "home"
    hub.delay_per_chunk = 0.3
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "wiki", "pull", "--checkpoint-every", "1000"],
        env=_env(home, hub.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=restore_sigint)
    folder = home / "data" / "wiki" / "wiki-18"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(folder.glob(".partial-*/pull-state.json")):
        time.sleep(0.2)
    while time.monotonic() < deadline:
        states = list(folder.glob(".partial-*/pull-state.json"))
        if states and json.loads(states[0].read_text()).get("committed"):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted;" in err and "passages kept, run the same command to resume" in err
    assert "Traceback" not in err and list(folder.glob(".partial-*"))
