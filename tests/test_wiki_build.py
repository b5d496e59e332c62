"""Wiki index builders: every source format, passage splitting, bad input, atomic swaps."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from edgeagent.errors import UserError
from edgeagent.wiki import store
from edgeagent.wiki.build import build_from_file
from edgeagent.wiki.index import WikiIndex
from edgeagent.wiki.passages import Passage, split_words
from edgeagent.wiki.sources import Source

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEAGENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_jsonl(path: Path, records: Sequence[Mapping[str, object]], *, gz: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


ARTICLES = [
    {"title": "Ada Lovelace", "text": "Ada Lovelace was an English mathematician who wrote "
     "the first published algorithm for the Analytical Engine of Charles Babbage."},
    {"title": "Analytical Engine", "text": "The Analytical Engine was a proposed mechanical "
     "general-purpose computer designed by Charles Babbage."},
    {"title": "Kansas City", "text": "Kansas City is the largest city in Missouri."},
]


def titles(hits: list[Passage]) -> list[str]:
    return [h.title for h in hits]


# -- splitting ----------------------------------------------------------------------


def test_split_keeps_every_word_in_order_and_caps_passages_at_100_words() -> None:
    paragraphs = ["Early life.", " ".join(f"a{i}" for i in range(30)),
                  " ".join(f"b{i}" for i in range(250)), "Legacy.", "short tail line"]
    text = "\n".join(paragraphs)
    parts = split_words(text)
    assert len(parts) >= 4
    assert all(len(p.split()) <= 100 for p in parts)
    assert " ".join(parts).split() == text.split()
    # the heading travels with the paragraph that follows it
    assert parts[0].startswith("Early life. a0 a1")


def test_short_text_stays_one_passage() -> None:
    text = " ".join(["word"] * 140)
    assert split_words(text) == [text]
    assert split_words("  \n ") == []


# -- formats ------------------------------------------------------------------------


def test_jsonl_gz_title_text_builds_and_splits_articles(home: Path, tmp_path: Path) -> None:
    long_text = "\n".join(" ".join(f"w{p}x{i}" for i in range(80)) for p in range(5))
    src = write_jsonl(tmp_path / "a.jsonl.gz",
                      [*ARTICLES, {"id": "L1", "title": "Long", "text": long_text}], gz=True)
    meta = build_from_file("t", src)
    assert meta.format == "jsonl"
    assert meta.passages == 3 + 5  # 400 words -> 5 paragraphs of 80 words
    ix = WikiIndex.open("t")
    hits = ix.search("who wrote the first algorithm for Babbage's engine", 2)
    assert hits[0].title == "Ada Lovelace"
    long_hits = ix.search("w3x10 w3x11", 1)
    assert long_hits[0].title == "Long" and long_hits[0].doc_id == "L1#3"
    assert len(long_hits[0].text.split()) == 80


def test_id_contents_records_are_kept_as_passages(home: Path, tmp_path: Path) -> None:
    body = " ".join(f"token{i}" for i in range(180))  # longer than 100 words: not split
    src = write_jsonl(tmp_path / "wiki18.jsonl", [
        {"id": "17", "contents": '"Grace Hopper"\nGrace Hopper was a computer pioneer. ' + body},
        {"id": "18", "contents": '"COBOL"\nCOBOL is a compiled English-like language.'},
    ])
    assert build_from_file("w18", src).passages == 2
    hit = WikiIndex.open("w18").search("computer pioneer", 1)[0]
    assert (hit.title, hit.doc_id) == ("Grace Hopper", "17")
    assert hit.text.startswith("Grace Hopper was a computer pioneer.")
    assert len(hit.text.split()) == 186


def test_dpr_tsv_with_header_and_quotes(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "psgs_w100.tsv"
    src.write_text(
        "id\ttext\ttitle\n"
        '1\t"Aaron is a prophet, high priest, and the brother of Moses."\tAaron\n'
        "2\tThe Nile is a major north-flowing river in Africa.\tNile\n",
        encoding="utf-8",
    )
    meta = build_from_file("dpr", src)
    assert (meta.format, meta.passages) == ("dpr-tsv", 2)
    hit = WikiIndex.open("dpr").search("brother of Moses", 1)[0]
    assert (hit.title, hit.doc_id) == ("Aaron", "1")
    assert hit.text == "Aaron is a prophet, high priest, and the brother of Moses."


def test_unicode_line_separator_stays_inside_a_record(home: Path, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "u.jsonl", [
        {"title": "Sep", "text": "before\u2028after the separator"},
        {"title": "Other", "text": "unrelated"},
    ])
    assert build_from_file("u", src).passages == 2
    assert titles(WikiIndex.open("u").search("separator", 3)) == ["Sep"]


MEDIAWIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">
  <siteinfo><sitename>Wikipedia</sitename></siteinfo>
  <page><title>Alan Turing</title><ns>0</ns><id>10</id><revision><id>1</id>
    <text xml:space="preserve">{{Infobox person|name=Alan Turing|birth_place=Maida Vale}}
'''Alan Mathison Turing''' was an English [[mathematician]] and [[computer science|computer \
scientist]].&lt;ref&gt;{{cite book|title=Secretref}}&lt;/ref&gt;
[[File:Turing.jpg|thumb|Turing at 16 hiddencaption]]

== Codebreaking ==
He worked at [[Bletchley Park]] on the Enigma cipher.
{| class="wikitable"
| tablecell || value
|}

== References ==
{{reflist}} referencesjunk

[[Category:English mathematicians]]
[[de:Alan Turing]]</text></revision></page>
  <page><title>Turing</title><ns>0</ns><id>11</id><redirect title="Alan Turing" />
    <revision><id>2</id>
    <text xml:space="preserve">#REDIRECT [[Alan Turing]]</text></revision></page>
  <page><title>Enigma (disambiguation)</title><ns>0</ns><id>12</id><revision><id>3</id>
    <text xml:space="preserve">'''Enigma''' may refer to: cipher machine {{disambiguation}}
    </text></revision></page>
  <page><title>Mercury</title><ns>0</ns><id>14</id><revision><id>5</id>
    <text xml:space="preserve">'''Mercury''' may mean the planet or the element cipher.
{{Disambig}}</text></revision></page>
  <page><title>Talk:Alan Turing</title><ns>1</ns><id>13</id><revision><id>4</id>
    <text xml:space="preserve">Talk page about the Enigma cipher.</text></revision></page>
</mediawiki>
"""


def test_mediawiki_bz2_dump_keeps_only_real_articles_as_plain_text(
    home: Path, tmp_path: Path
) -> None:
    src = tmp_path / "enwiki-pages-articles.xml.bz2"
    src.write_bytes(bz2.compress(MEDIAWIKI.encode()))
    meta = build_from_file("mw", src)
    assert meta.format == "mediawiki"
    hits = WikiIndex.open("mw").search("Enigma cipher", 10)
    assert titles(hits) == ["Alan Turing"]  # no redirect, disambiguation or talk page
    text = hits[0].text
    assert "Alan Mathison Turing was an English mathematician and computer scientist." in text
    assert "Bletchley Park" in text
    for junk in ("{{", "[[", "Secretref", "hiddencaption", "tablecell", "referencesjunk",
                 "Category", "Maida", "de:"):
        assert junk not in text, junk
    assert hits[0].doc_id == "10#0"


# -- bad input ----------------------------------------------------------------------


def expect_user_error(fn: object, *words: str) -> str:
    with pytest.raises(UserError) as info:
        fn()  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message.lower(), message
    return message


def test_bad_sources_give_one_line_errors_and_leave_nothing(home: Path, tmp_path: Path) -> None:
    good = "".join(json.dumps(r) + "\n" for r in ARTICLES * 50).encode()
    cases: dict[str, tuple[bytes, tuple[str, ...]]] = {
        "trunc.jsonl.gz": (gzip.compress(good)[:-40], ("truncated",)),
        "trunc.xml.bz2": (bz2.compress(MEDIAWIKI.encode() * 3)[:200], ("truncated",)),
        "latin1.jsonl": (b'{"title": "A", "text": "ok"}\n{"title": "B", "text": "caf\xe9"}\n',
                         ("utf-8", "line 2")),
        "badline.jsonl": (b'{"title": "A", "text": "ok"}\n{"title": "B", "te', ("line 2",)),
        "shape.jsonl": (b'{"name": "A"}\n', ("title, text",)),
        "empty.jsonl": (b"", ("no passages",)),
        "latin1.xml": (b"<mediawiki><page><title>caf\xe9</title></page></mediawiki>",
                       ("xml",)),
        "cols.tsv": (b"1\tonly two\n", ("3 tab-separated",)),
        "mystery.bin": (b"\x00\x01binary", ("format",)),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        expect_user_error(lambda path=path: build_from_file("bad", path), *words)
    expect_user_error(lambda: build_from_file("bad", tmp_path / "missing.jsonl"), "no such file")
    expect_user_error(lambda: build_from_file("bad", tmp_path / "cols.tsv", fmt="csv"),
                      "unknown format")
    expect_user_error(lambda: build_from_file("../x", tmp_path / "cols.tsv"), "invalid index name")
    assert store.list_indexes() == []
    bad_dir = store.index_dir("bad")
    assert not bad_dir.exists() or not any(bad_dir.iterdir())


def test_existing_name_needs_force_and_failed_rebuild_keeps_old_index(
    home: Path, tmp_path: Path
) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", ARTICLES)
    build_from_file("k", src)
    expect_user_error(lambda: build_from_file("k", src), "already exists", "--force")
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b'{"title": "New", "text": "new article"}\n{oops\n')
    expect_user_error(lambda: build_from_file("k", broken, force=True), "line 2")
    assert store.read_meta("k").passages == 3  # type: ignore[union-attr]
    assert titles(WikiIndex.open("k").search("Kansas City", 1)) == ["Kansas City"]
    leftovers = [p.name for p in store.index_dir("k").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    # --force replaces it, and the old generation is cleaned up
    build_from_file("k", write_jsonl(tmp_path / "b.jsonl", ARTICLES[:1]), force=True)
    assert store.read_meta("k").passages == 1  # type: ignore[union-attr]
    assert len([p for p in store.index_dir("k").iterdir() if p.name.startswith("g-")]) == 1


def test_limit_caps_passages(home: Path, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", ARTICLES * 10)
    assert build_from_file("lim", src, limit=7).passages == 7


def test_format_sniffing_without_a_known_suffix(tmp_path: Path) -> None:
    (tmp_path / "dump").write_bytes(bz2.compress(MEDIAWIKI.encode()))
    (tmp_path / "lines").write_bytes(gzip.compress(b'{"title": "A", "text": "b"}\n'))
    (tmp_path / "passages").write_bytes(b"1\ttext here\tTitle\n")
    assert Source(tmp_path / "dump").format == "mediawiki"
    assert Source(tmp_path / "lines").format == "jsonl"
    assert Source(tmp_path / "passages").format == "dpr-tsv"


# -- kill -9 --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a POSIX FIFO")
def test_kill_9_mid_build_leaves_previous_index_searchable(home: Path, tmp_path: Path) -> None:
    build_from_file("live", write_jsonl(tmp_path / "old.jsonl", ARTICLES))
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    release = threading.Event()

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:
                for i in range(20_000):
                    f.write(json.dumps({"title": f"New {i}", "text": f"fresh text {i}"})
                            .encode() + b"\n")
                f.flush()
                release.wait(60)  # keep the pipe open: the build is stuck mid-way
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    env = {**os.environ, "EDGEAGENT_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeagent", "wiki", "build", "live", "--from", str(fifo),
         "--force"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = store.index_dir("live")
    deadline = time.monotonic() + 60
    tmp_dirs: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        tmp_dirs = [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
        if tmp_dirs and any(tmp_dirs[0].iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    assert tmp_dirs, "the build never started"
    time.sleep(0.3)  # let it index some of the 20k passages
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait(30)
    release.set()
    writer.join(10)

    assert store.read_meta("live").passages == 3  # type: ignore[union-attr]
    assert titles(WikiIndex.open("live").search("Analytical Engine Babbage", 1)) == [
        "Analytical Engine"
    ]
    assert any(p.name.startswith(".tmp-") for p in folder.iterdir())  # the dead build's folder
    # the next build succeeds and sweeps the dead build's temp folder away
    build_from_file("live", write_jsonl(tmp_path / "new.jsonl", ARTICLES[:2]), force=True)
    assert not any(p.name.startswith(".tmp-") for p in folder.iterdir())
    assert store.read_meta("live").passages == 2  # type: ignore[union-attr]
