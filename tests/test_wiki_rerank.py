"""Second-stage retrieval with a tiny random BERT GGUF (converted in the test) and real Tantivy.

Covers: the `bert` converter and llama.cpp embeddings (unit vectors, batch
packing does not mix sequences, truncation), int8/binary stored vectors and
the model-mismatch refusal, the per-index embedding cache, fusion, profiles
recorded per index and chosen at open, and the CLI (`wiki build --profile
--embed`, `wiki search --retrieval`, `bench wiki` without `--data`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeagent.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    {"title": "Paris", "text": "Paris is the capital of France and its largest city."},
    {"title": "London", "text": "London is the capital city of England on the river Thames."},
    {"title": "Seine", "text": "The Seine is a river in France that flows through Paris."},
    {"title": "Thames", "text": "The Thames is a river of southern England through London."},
    {"title": "Abba", "text": "Abba was a band from Sweden; their song Waterloo won in 1974."},
    {"title": "Film", "text": "A film is a work of visual art telling a story in images."},
]


@pytest.fixture(scope="session")
def tiny_bert_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_bert import write_tiny_bert

    from converters.hf_gguf import convert_to_gguf

    base = tmp_path_factory.mktemp("tinybert")
    src = write_tiny_bert(base / "hf")
    result = convert_to_gguf(src, base / "tiny-bert.gguf", outtype="f32", name="tiny-bert")
    assert result.arch == "bert"
    return result.path


@pytest.fixture(scope="session")
def other_bert_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_bert import write_tiny_bert

    from converters.hf_gguf import convert_to_gguf

    base = tmp_path_factory.mktemp("tinybert2")
    return convert_to_gguf(write_tiny_bert(base / "hf", seed=1), base / "other.gguf",
                           outtype="f32", name="other-bert").path


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    return path


def test_bert_gguf_metadata(tiny_bert_gguf: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(str(tiny_bert_gguf))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "bert"
    assert fields["tokenizer.ggml.model"].contents() == "bert"
    assert fields["bert.pooling_type"].contents() == int(gguf.PoolingType.MEAN)
    assert fields["bert.attention.causal"].contents() is False
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert tokens[2] == "[CLS]" and "\u2581paris" in tokens and "a" in tokens  # "##a" -> "a"
    names = {t.name for t in reader.tensors}
    assert "blk.1.layer_output_norm.weight" in names and not any("pooler" in n for n in names)


def test_embedder_unit_vectors_and_batching(tiny_bert_gguf: Path) -> None:
    from edgeagent.wiki.embedder import GgufEmbedder

    with GgufEmbedder(tiny_bert_gguf, n_threads=1) as emb:
        assert emb.dim == 32 and emb.model_id.startswith("tiny-bert@")
        texts = ["paris is the capital of france", "london song", "", "a river " * 200]
        batch = emb.embed(texts)
        assert batch.shape == (4, 32)
        assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
        # each text alone gives the same vector as inside the packed batch
        for i, text in enumerate(texts):
            alone = emb.embed([text])[0]
            assert float(alone @ batch[i]) > 0.9999
        assert float(batch[0] @ batch[1]) < 0.9999  # different texts, different vectors
        ids = emb.tokens("paris " * 500)
        assert len(ids) == emb.max_tokens and ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP]
        assert emb.tokens("paris")[1] == 5 + 11  # the WordPiece id of "paris"


def test_embedder_refuses_a_chat_model(tiny_gguf: Path) -> None:
    from edgeagent.wiki.embedder import GgufEmbedder

    with pytest.raises(UserError, match="not an embedding model"):
        GgufEmbedder(tiny_gguf)


def test_fusion_orders() -> None:
    from edgeagent.wiki.rerank import fuse
    from edgeagent.wiki.retrieval import get_profile

    bm25 = [9.0, 8.0, 1.0, 0.5]
    cosine = [0.1, 0.85, 0.9, 0.2]
    rrf = get_profile("bm25+vectors", fusion="rrf")
    # bm25 ranks 1,2,3,4; cosine ranks 4,2,1,3: 1/63+1/61 > 2/62 > 1/61+1/64 > 1/64+1/63
    assert fuse(bm25, cosine, rrf) == [2, 1, 0, 3]
    linear = get_profile("bm25+vectors", fusion="linear")
    mixed = fuse(bm25, cosine, linear)
    expect = sorted(range(4), key=lambda i: -(linear.alpha * bm25[i] / 9 +
                                               (1 - linear.alpha) * cosine[i]))
    assert mixed == expect
    assert fuse([], [], rrf) == []


def test_quantized_vectors_keep_cosines(tmp_path: Path) -> None:
    from edgeagent.wiki.vectors import VectorStore, write_vectors

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    keys = rng.integers(0, 2**63, 50, dtype=np.uint64)
    query = vecs[7]
    exact = vecs @ query
    for quant, tolerance in (("int8", 0.02), ("binary", 0.35)):
        folder = tmp_path / quant
        folder.mkdir()
        write_vectors(folder, keys, vecs, quant=quant, model_id="m@1")
        got = VectorStore(folder, "m@1").scores(query, [int(k) for k in keys] + [12345])
        assert got[-1] is None  # an unknown passage has no vector
        assert np.max(np.abs(np.array(got[:-1], dtype=np.float32) - exact)) < tolerance
        assert int(np.argmax(np.array(got[:-1], dtype=np.float32))) == 7
        with pytest.raises(UserError, match="made by m@1"):
            VectorStore(folder, "other@2")


def _build(docs_file: Path, name: str = "w") -> None:
    from edgeagent.wiki.build import build_from_file

    build_from_file(name, docs_file, split=False)


def test_stored_vectors_profile_and_mismatch(docs_file: Path, tiny_bert_gguf: Path,
                                             other_bert_gguf: Path) -> None:
    from edgeagent.wiki import store
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.vectors import read_vector_meta

    _build(docs_file)
    assert WikiIndex.open("w").retrieval == "bm25"
    vectors = finish_retrieval("w", profile="bm25+vectors", embed_model=tiny_bert_gguf)
    assert vectors is not None and vectors.count == len(DOCS) and vectors.quant == "int8"
    _, folder = store.live_path("w")
    assert read_vector_meta(folder) == vectors
    index = WikiIndex.open("w")
    assert index.retrieval == "bm25+vectors"
    hits = index.search("capital of France", 3)
    assert 1 <= len(hits) <= 3 and {h.title for h in hits} <= {d["title"] for d in DOCS}
    bm25 = {h.title for h in index.bm25("capital of France", 10)}
    assert {h.title for h in hits} <= bm25  # the second stage only reorders candidates
    assert index.search("", 3) == [] and index.search("of the", 0) == []
    with pytest.raises(UserError, match="made by tiny-bert@"):
        WikiIndex.open("w", embed_model=other_bert_gguf).search("Paris", 3)
    # a bm25 open of the same index needs no model at all
    assert WikiIndex.open("w", retrieval="bm25").second_stage() is None


def test_rerank_cache_embeds_each_passage_once(docs_file: Path, tiny_bert_gguf: Path) -> None:
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.index import WikiIndex

    _build(docs_file)
    finish_retrieval("w", profile="bm25+rerank", embed_model=tiny_bert_gguf)
    index = WikiIndex.open("w")
    stage = index.second_stage()
    assert stage is not None and stage.cache is not None and len(stage.cache) == 0
    first = index.search_many(["river in France", "capital city of England"], 2)
    assert all(len(hits) == 2 for hits in first)
    cached = len(stage.cache)
    assert 0 < cached <= len(DOCS)
    size = stage.cache.path.stat().st_size
    assert index.search_many(["river in France", "capital city of England"], 2) == first
    assert stage.cache.path.stat().st_size == size  # nothing embedded twice
    # a new process (a fresh open) reads the cache file back
    again = WikiIndex.open("w", embed_model=tiny_bert_gguf)
    from edgeagent.wiki import rerank

    rerank._embedders.clear()
    stage2 = again.second_stage()
    assert stage2 is not None and stage2.cache is not None and len(stage2.cache) == cached


def test_unknown_profile_and_missing_vectors(docs_file: Path, tiny_bert_gguf: Path) -> None:
    from edgeagent.wiki.index import WikiIndex

    _build(docs_file)
    with pytest.raises(UserError, match="unknown retrieval profile"):
        WikiIndex.open("w", retrieval="dense")
    index = WikiIndex.open("w", retrieval="bm25+vectors", embed_model=tiny_bert_gguf)
    with pytest.raises(UserError, match="no stored vectors"):
        index.search("Paris", 3)


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEAGENT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgeagent", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)


def test_cli_build_embed_search(docs_file: Path, tiny_bert_gguf: Path, tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    out = _cli("wiki", "build", "w", "--from", str(docs_file), "--no-split", "--profile",
               "bm25+vectors", "--embed", "binary", "--embed-model", str(tiny_bert_gguf),
               home=home)
    assert out.returncode == 0, out.stderr
    assert f"embedded {len(DOCS)} passages (binary" in out.stdout
    assert "retrieval profile: bm25+vectors" in out.stdout
    got = _cli("wiki", "search", "w", "river", "Paris", "--json", home=home)
    assert got.returncode == 0, got.stderr
    assert 1 <= len(json.loads(got.stdout)) <= 3
    bad = _cli("wiki", "build", "x", "--from", str(docs_file), "--profile", "bm25+vectors",
               "--embed-model", str(tmp_path / "missing.gguf"), home=home)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "embedding model not found" in bad.stderr
    assert "built wiki index" not in bad.stdout  # refused before building


def test_bench_wiki_needs_data(tmp_path: Path) -> None:
    out = _cli("bench", "wiki", "--json", home=tmp_path / "h")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "needs --data DIR" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_trajectory_records_retrieval(docs_file: Path, tiny_bert_gguf: Path) -> None:
    """A run over a real index records the profile's name and what it searched with
    (depth, links, and for a second stage its vectors, fusion and model), and the record
    survives a JSON round trip."""
    from test_agent import ScriptedEngine, act

    from edgeagent.agent.loop import Agent, AgentConfig
    from edgeagent.agent.trajectory import Trajectory
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.retrieval import get_profile

    _build(docs_file)
    bm25 = WikiIndex.open("w")
    script = [act("Search.", 'print(web_search("capital of France"))'),
              act("Answer.", 'final_answer("Paris")')]
    traj = Agent(ScriptedEngine(script), search=bm25.search,
                 config=AgentConfig(max_steps=2)).run("What is the capital of France?")
    assert traj.answer == "Paris" and "Paris" in traj.steps[0].observation
    assert traj.retrieval == "bm25"
    assert traj.retrieval_settings == {"candidates": 0, "links": 0}

    finish_retrieval("w", profile="bm25+vectors", embed_model=tiny_bert_gguf)
    index = WikiIndex.open("w", embed_model=tiny_bert_gguf,
                           retrieval=get_profile("bm25+vectors", candidates=5))
    traj = Agent(ScriptedEngine(list(script)), search=index.search,
                 config=AgentConfig(max_steps=2)).run("What is the capital of France?")
    assert traj.retrieval == "bm25+vectors"
    assert traj.retrieval_settings == {
        "candidates": 5, "links": 1, "vectors": "stored", "fusion": "linear",
        "alpha": index.profile.alpha, "embed_model": tiny_bert_gguf.name}
    data = json.loads(traj.to_json())
    assert data["retrieval_settings"] == traj.retrieval_settings
    again = Trajectory.from_dict(data)
    assert (again.retrieval, again.retrieval_settings) == (traj.retrieval,
                                                            traj.retrieval_settings)
    # a run without a wiki records neither
    none = Agent(ScriptedEngine([act("Answer.", 'final_answer("4")')]), search=None,
                 config=AgentConfig(max_steps=1)).run("2+2?")
    assert none.retrieval is None and "retrieval_settings" not in json.loads(none.to_json())


GOLD = [("What river flows through Paris?", ["Seine", "Paris"]),
        ("Which band sang Waterloo?", ["Abba"]),
        ("Which river runs through London?", ["Thames", "London"])]


def _bench(tmp_path: Path, *argv: str) -> dict[str, object]:
    """`bench wiki` on DOCS as the multihop paragraphs and GOLD as the gold titles."""
    import argparse
    import gzip

    from edgeagent.bench.wiki import add_arguments, run

    data = tmp_path / "data"
    if not data.exists():
        (data / "wiki").mkdir(parents=True)
        (data / "retrieval").mkdir()
        with gzip.open(data / "wiki" / "multihop_paragraphs.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(d) + "\n" for d in DOCS)
        (data / "retrieval" / "hotpotqa_gold_titles.jsonl").write_text("".join(
            json.dumps({"question": q, "gold_titles": g, "gold_in_seed": True}) + "\n"
            for q, g in GOLD))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(["--data", str(data), "--skip-scale", *argv]))


def test_bench_wiki_profiles_side_by_side(tmp_path: Path, tiny_bert_gguf: Path) -> None:
    result = _bench(tmp_path, "--fusion", "both", "--embed-model", str(tiny_bert_gguf))
    rows = result["profiles"]
    assert isinstance(rows, dict)
    assert set(rows) == {"bm25", "bm25+links", "bm25+rerank/rrf", "bm25+rerank/linear",
                         "bm25+vectors/rrf", "bm25+vectors/linear"}
    for row in rows.values():
        assert 0.0 <= row["recall_at_3"] <= row["recall_at_10"] <= 1.0
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["queries"] == len(GOLD)
    assert rows["bm25+rerank/rrf"]["cached_at_start"] == 0  # the first run embeds cold
    assert rows["bm25+rerank/linear"]["cached_at_start"] > 0  # ... the second finds them
    assert result["recall_at_3"] == rows["bm25"]["recall_at_3"]
    assert result["embed_passages_per_s"] > 0  # type: ignore[operator]
    assert str(result["embed_model"]).startswith("tiny-bert@")


def test_bench_wiki_depths_and_held_out_half(tmp_path: Path, tiny_bert_gguf: Path) -> None:
    result = _bench(tmp_path, "--profiles", "bm25,bm25+vectors", "--fusion", "rrf",
                    "--candidates", "2,5", "--split", "held",
                    "--embed-model", str(tiny_bert_gguf))
    rows = result["profiles"]
    assert isinstance(rows, dict)
    assert set(rows) == {"bm25", "bm25+vectors/rrf/c2", "bm25+vectors/rrf/c5"}
    assert result["split"] == "held" and result["recall_questions"] == len(GOLD) - len(GOLD) // 2
    for row in rows.values():
        assert row["queries"] == result["recall_questions"] == 2
    for bad in ("0", "ten", ","):
        with pytest.raises(UserError, match="--candidates"):
            _bench(tmp_path, "--candidates", bad)


def test_preload_loads_the_model_in_the_background(docs_file: Path, tiny_bert_gguf: Path) -> None:
    import threading

    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.starter import open_search

    _build(docs_file)
    finish_retrieval("w", profile="bm25+vectors", embed_model=tiny_bert_gguf)
    search = open_search("w")
    index = search.__self__  # type: ignore[attr-defined]
    for thread in threading.enumerate():
        if thread.name == "embedder-preload":
            thread.join(60)
    assert index._second is not None and index.retrieval == "bm25+vectors"
    assert search("river in France", 2)
    assert open_search("w", retrieval="bm25").__self__.second_stage() is None  # type: ignore[attr-defined]


def test_query_takes_the_idle_threads_only_when_nothing_else_runs(
        tiny_bert_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search query embeds on 2 threads when no other task is runnable (quiet machine),
    on 1 when something else runs or the count is unknown; passages (builds) keep the
    configured threads. The vectors do not depend on the thread count."""
    from edgeagent.wiki import embedder as emb

    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.10 0.20 0.30 1/80 4242\n")
    assert emb.runnable_elsewhere(loadavg) == 0
    loadavg.write_text("1.90 1.20 0.80 3/80 4242\n")
    assert emb.runnable_elsewhere(loadavg) == 2
    assert emb.runnable_elsewhere(tmp_path / "missing") > 1000

    monkeypatch.setattr(emb.os, "cpu_count", lambda: 2)
    e = emb.GgufEmbedder(tiny_bert_gguf)
    others = [0]
    monkeypatch.setattr(emb, "runnable_elsewhere", lambda: others[0])
    try:
        assert (e.n_threads, e.idle_threads) == (1, 2)
        quiet = e.embed(["who founded the city"], query=True)
        assert e._threads_now == 2
        e.embed(["a passage about the city"] * 5, query=True)  # not a search query
        assert e._threads_now == 1
        others[0] = 1
        busy = e.embed(["who founded the city"], query=True)
        assert e._threads_now == 1
        others[0] = 0
        e.embed(["who founded the city"])  # a passage, as `wiki build --embed` embeds
        assert e._threads_now == 1
        assert np.allclose(quiet, busy, atol=1e-5)
    finally:
        e.close()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emb.os, "cpu_count", lambda: 1)
        one = emb.GgufEmbedder(tiny_bert_gguf)
        assert one.idle_threads == 1
        one.close()
