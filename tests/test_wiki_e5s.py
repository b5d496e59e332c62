"""Embedding models as data, and the e5 path, with a tiny random `E5S1` file (fast).

Covers: `converters.e5s_gguf` (header, unigram tokenizer, Q4_0 blocks copied
byte for byte, mean pooling, our prefix / char-map / fusion keys; bad files
refused in one line), `GgufEmbedder` reading those keys (query vs passage
prefix, character map, `<s>`/`</s>` added), the model's fusion weight
replacing the profile's, `--embed-model NAME` recorded by the index and
resolved from the models folder, and the mismatch refusal for stored vectors.
The real multilingual-e5-small is in test_retrieval_slow.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from edgeagent.errors import UserError

DOCS = [
    {"title": "Paris", "text": "Paris is the capital of France."},
    {"title": "London", "text": "London is on the river Thames."},
    {"title": "Seine", "text": "The Seine is a river of France."},
]


@pytest.fixture(scope="session")
def tiny_e5s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_e5s import write_tiny_e5s

    return write_tiny_e5s(tmp_path_factory.mktemp("e5s") / "tiny.bin")


@pytest.fixture(scope="session")
def tiny_e5_gguf(tiny_e5s: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from converters.e5s_gguf import convert_e5s

    return convert_e5s(tiny_e5s, tmp_path_factory.mktemp("e5g") / "tiny-e5.gguf",
                       name="tiny-e5", source_url="test:tiny", fusion_alpha=0.25)


def test_e5s_gguf_metadata_and_blocks(tiny_e5s: Path, tiny_e5_gguf: Path) -> None:
    from tiny_e5s import ROWS, WORDS

    from converters.e5s_gguf import read_e5s

    reader = gguf.GGUFReader(str(tiny_e5_gguf))
    fields = reader.fields
    assert fields["general.architecture"].contents() == "bert"
    assert fields["tokenizer.ggml.model"].contents() == "t5"
    assert fields["bert.pooling_type"].contents() == int(gguf.PoolingType.MEAN)
    assert fields["edgeagent.embed.query_prefix"].contents() == "query: "
    assert fields["edgeagent.embed.passage_prefix"].contents() == "passage: "
    assert json.loads(fields["edgeagent.embed.char_map"].contents()) == {"ﬁ": "fi"}
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == ROWS and tokens[4:4 + len(WORDS)] == WORDS
    src = tiny_e5s.read_bytes()
    _, count, offset = read_e5s(memoryview(src)).tensors["l1.fi.w"]
    tensor = next(t for t in reader.tensors if t.name == "blk.1.ffn_up.weight")
    assert tensor.tensor_type == gguf.GGMLQuantizationType.Q4_0
    assert bytes(tensor.data.tobytes()) == src[offset:offset + count // 32 * 18]


def test_e5s_embedder_prefixes_and_char_map(tiny_e5_gguf: Path) -> None:
    from edgeagent.wiki.embedder import GgufEmbedder

    with GgufEmbedder(tiny_e5_gguf) as emb:
        assert emb.fusion_alpha == 0.25 and emb.model_id.startswith("tiny-e5@")
        assert emb.prepare("ﬁ paris?", query=True) == "query: fi paris?"
        assert emb.prepare("the river") == "passage: the river"
        ids = emb.tokens(emb.prepare("paris", query=True))
        assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 3  # <s> ... </s>
        q = emb.embed(["the capital of france"], query=True)
        p = emb.embed(["the capital of france"])
        assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
        assert float(q[0] @ p[0]) < 0.9999  # the prefixes differ, so the vectors do
        again = emb.embed(["passage: the capital of france"], query=False)
        assert not np.allclose(again, p)  # the prefix is added once, never assumed present


def test_e5s_bad_files(tiny_e5s: Path, tmp_path: Path) -> None:
    from converters.e5s_gguf import convert_e5s

    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + tiny_e5s.read_bytes()[4:])
    with pytest.raises(UserError, match="bad magic"):
        convert_e5s(bad, tmp_path / "x.gguf", name="x", source_url="x")
    bad.write_bytes(tiny_e5s.read_bytes()[:3000])
    with pytest.raises(UserError, match=r"truncated|past the end"):
        convert_e5s(bad, tmp_path / "x.gguf", name="x", source_url="x")
    assert not (tmp_path / "x.gguf").exists()


def test_model_fusion_weight_replaces_the_profile() -> None:
    from edgeagent.wiki.rerank import fuse
    from edgeagent.wiki.retrieval import get_profile

    profile = get_profile("bm25+rerank")  # linear, alpha 0.7
    bm25, cos = [10.0, 9.0], [0.80, 0.86]
    assert fuse(bm25, cos, profile) == [0, 1]  # BM25 dominates at 0.7
    assert fuse(bm25, cos, profile, alpha=0.1) == [1, 0]  # the model's own weight


def test_model_choice() -> None:
    from edgeagent.wiki.embed_model import EMBED_MODELS, model_choice

    assert set(EMBED_MODELS) == {"all-MiniLM-L6-v2", "multilingual-e5-small"}
    assert model_choice(None) is None
    assert model_choice("multilingual-e5-small") == "multilingual-e5-small"
    with pytest.raises(UserError, match=r"not found: bge-small \(neither a GGUF file nor one of "
                                        r"all-MiniLM-L6-v2, multilingual-e5-small\)"):
        model_choice("bge-small")


def test_index_records_model_name_and_refuses_another(tmp_path: Path, tiny_e5_gguf: Path) -> None:
    from tiny_bert import write_tiny_bert

    from converters.hf_gguf import convert_to_gguf
    from edgeagent.wiki import store
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.embed_build import finish_retrieval
    from edgeagent.wiki.embed_model import embed_model_path
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.retrieval import read_settings

    # the named model as if fetched and converted already (no network in tests)
    named = embed_model_path("multilingual-e5-small")
    named.parent.mkdir(parents=True, exist_ok=True)
    named.write_bytes(tiny_e5_gguf.read_bytes())
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    build_from_file("w", docs, split=False)
    vectors = finish_retrieval("w", profile="bm25+vectors", embed_model="multilingual-e5-small")
    assert vectors is not None and vectors.model_id.startswith("tiny-e5@")
    _, folder = store.live_path("w")
    assert read_settings(folder).embed_model == "multilingual-e5-small"
    hits = WikiIndex.open("w").search("capital of France", 2)
    assert 1 <= len(hits) <= 2
    other = convert_to_gguf(write_tiny_bert(tmp_path / "hf"), tmp_path / "b.gguf",
                            outtype="f32", name="tiny-bert").path
    with pytest.raises(UserError, match="made by tiny-e5@"):
        WikiIndex.open("w", embed_model=other).search("Paris", 2)


def test_e5_brings_its_tuned_depth_and_links_and_explicit_settings_win(tmp_path: Path) -> None:
    """An index whose second stage uses e5 by name searches with the depth and title links
    tuned with e5 (20 candidates, links from the top 2); other models keep the profile's
    10 / 1, a model-free profile is untouched, and explicit settings (bench rows) win."""
    from edgeagent.wiki.build import build_from_file
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.retrieval import IndexRetrieval, get_profile, write_settings

    e5 = "multilingual-e5-small"
    for name in ("bm25+rerank", "bm25+vectors"):
        tuned = get_profile(name, embed_model=e5)
        assert (tuned.candidates, tuned.links) == (20, 2)
        for other in (None, "all-MiniLM-L6-v2", tmp_path / f"{e5}.gguf"):
            plain = get_profile(name, embed_model=other)
            assert (plain.candidates, plain.links) == (10, 1)
        mixed = get_profile(name, embed_model=e5, candidates=50, links=0)
        assert (mixed.candidates, mixed.links) == (50, 0)
    assert get_profile("bm25+links", embed_model=e5) == get_profile("bm25+links")

    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"title": "A", "text": "alpha beta"}) + "\n", encoding="utf-8")
    build_from_file("w", docs, split=False)
    index = WikiIndex.open("w")
    write_settings(index.path, IndexRetrieval("bm25+rerank", e5))
    opened = WikiIndex.open("w")
    assert opened.embed_model == e5 and opened.profile == get_profile("bm25+rerank",
                                                                        embed_model=e5)
    assert WikiIndex.open("w", embed_model="all-MiniLM-L6-v2").profile.links == 1
