"""Wiki search: hostile queries, the web_search format, recall vs naive, and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from edgeagent.cli import main
from edgeagent.wiki.build import build_from_file
from edgeagent.wiki.index import WikiIndex
from edgeagent.wiki.passages import Passage
from edgeagent.wiki.recall import load_gold_questions, recall_at_k
from edgeagent.wiki.tool import format_web_search, make_web_search

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = DATA / "wiki" / "multihop_paragraphs.jsonl.gz"
GOLD = DATA / "retrieval" / "hotpotqa_gold_titles.jsonl"
needs_data = pytest.mark.skipif(
    not SEED.exists() or not GOLD.exists(),
    reason=f"shared data not found at {DATA} (needs ../shared/data next to the repo)",
)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEAGENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def seed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SEED.exists():
        pytest.skip(f"shared data not found at {DATA}")
    root = tmp_path_factory.mktemp("wiki")
    build_from_file("seed", SEED, limit=3000, root=root)
    return root


@needs_data
def test_hostile_queries_never_raise(seed_root: Path) -> None:
    ix = WikiIndex.open("seed", root=seed_root)
    rng = random.Random(4)
    words = ["the", "Kansas", "city", "AND", "OR", "NOT", ":", "(", ")", '"', "-", "+", "^",
             "~", "*", "?", "[", "]", "{", "}", "\\", "/", "title:x", "text:"]
    hostile = [
        "", "   ", "\n\t", "AND", "OR NOT", "title:", "text:Kansas", '"unclosed phrase',
        "(a OR b", "a) b(", "-", "--", "-Kansas", "+Kansas", "Kansas^3", "Kans*", "~2",
        "[1 TO 5]", "{a TO b}", "\\", "\x00", "🦀 emoji", "ä ö ü ß", "the of and a",
        " ".join(rng.choice(words) for _ in range(2500)),  # ~10 KB
        "x" * 10_000,  # one 10 KB token
    ]
    for query in hostile:
        hits = ix.search(query, 3)
        assert isinstance(hits, list) and len(hits) <= 3, query[:40]
    assert ix.search("", 3) == [] and ix.search("the of and a", 3) == []
    assert ix.search("Kansas City", 0) == []
    # syntax characters are plain text: the words still find their passages
    for query in ('Kansas AND City:"Missouri"', "(Kansas) -City", "title:Kansas text:City"):
        assert any("Kansas" in h.title for h in ix.search(query, 3)), query


@needs_data
def test_search_returns_ranked_distinct_articles(seed_root: Path) -> None:
    ix = WikiIndex.open("seed", root=seed_root)
    hits = ix.search("University of the Incarnate Word San Antonio Catholic", 5)
    assert hits[0].title == "University of the Incarnate Word"
    query_words = {"university", "incarnate", "word", "san", "antonio", "catholic"}
    assert all(query_words & set(f"{h.title} {h.text}".lower().split()) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.title for h in hits}) == len(hits)  # one passage per article
    assert all(h.doc_id for h in hits)


def test_web_search_output_matches_the_paper_format() -> None:
    hits = [Passage("Kansas City", "A city in Missouri.", 30.0, "1#0"),
            Passage("Lawrence, Kansas", "Home of KU.", 10.0, "2#0")]
    assert format_web_search(hits) == (
        "\nRetrieved documents:\n\n"
        '===== Document 0, similarity: 0.75 =====\n"Kansas City"\nA city in Missouri.\n\n'
        '===== Document 1, similarity: 0.50 =====\n"Lawrence, Kansas"\nHome of KU.'
    )
    calls: list[tuple[str, int]] = []

    def fake_search(query: str, k: int) -> list[Passage]:
        calls.append((query, k))
        return []

    assert "No documents found" in make_web_search(fake_search)("anything")
    assert calls == [("anything", 3)]


@needs_data
def test_entity_ranking_beats_naive_bm25_on_multihop_recall(tmp_path: Path) -> None:
    questions = load_gold_questions(GOLD)
    records = [json.loads(line) for line in GOLD.read_text("utf-8").splitlines() if line]
    in_seed = [r for r in records if r["gold_in_seed"]]
    assert [q.question for q in questions] == [r["question"] for r in in_seed]
    scores = {}
    for profile in ("naive", "entity"):
        build_from_file(profile, SEED, profile=profile, split=False, root=tmp_path)
        scores[profile] = recall_at_k(WikiIndex.open(profile, root=tmp_path), questions)
    assert scores["naive"][10] >= scores["naive"][3]  # recall@k grows with k
    assert scores["entity"][3] >= 0.78
    assert scores["entity"][3] >= scores["naive"][3] + 0.12
    assert scores["entity"][10] >= scores["naive"][10]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_build_list_search_rm(home: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"title": "Ada Lovelace", "text": "first computer programmer"})
                   + "\n" + json.dumps({"title": "Nile", "text": "a river in Africa"}) + "\n",
                   encoding="utf-8")
    code, out, _ = run_cli(["wiki", "build", "mini", "--from", str(src),
                            "--attribution", "test text", "--license", "CC0"], capsys)
    assert code == 0 and "2 passages" in out
    code, out, _ = run_cli(["wiki", "list"], capsys)
    assert code == 0 and "mini" in out and "test text" in out and "CC0" in out
    code, out, _ = run_cli(["wiki", "search", "mini", "computer", "programmers?", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["title"] == "Ada Lovelace"
    code, out, _ = run_cli(["wiki", "search", "mini", "river AND (Africa", "--tool"], capsys)
    assert code == 0 and out.startswith("\nRetrieved documents:") and '"Nile"' in out
    code, _, err = run_cli(["wiki", "build", "mini", "--from", str(src)], capsys)
    assert code != 0 and "--force" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(["wiki", "rm", "mini"], capsys)
    assert code == 0
    code, _, err = run_cli(["wiki", "search", "mini", "river"], capsys)
    assert code != 0 and "no wiki index named 'mini'" in err


def test_cli_bad_input_is_one_line_no_traceback(home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"title": "A", "text": "\xff\xfe"}\n')
    for args in (["wiki", "build", "x", "--from", str(tmp_path / "none.jsonl")],
                 ["wiki", "build", "x", "--from", str(bad)],
                 ["wiki", "rm", "ghost"]):
        code, _, err = run_cli(args, capsys)
        assert code != 0, args
        assert err.startswith("edgeagent: error: ") and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main(["wiki", "build", "x", "--from", str(bad), "--format", "parquet"])
    assert info.value.code != 0


def test_cli_module_imports_no_heavy_dependencies() -> None:
    import subprocess
    import sys

    code = ("import sys, edgeagent.cli.wiki; heavy = ('tantivy', 'rich', 'mwparserfromhell'); "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.strip()
    assert out == ""
