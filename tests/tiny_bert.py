"""Write a tiny random BERT sentence-embedding model as a Hugging Face directory.

The directory looks like a sentence-transformers checkpoint (config.json,
a WordPiece tokenizer.json, tokenizer_config.json, 1_Pooling/config.json and
model.safetensors, written by hand so no torch or safetensors library is
needed); `converters.convert_to_gguf` turns it into a `bert` GGUF that
llama.cpp embeds with. Weights are random (hidden 32, 2 layers): vectors are
meaningless but deterministic, unit-length and shaped like the real ones.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

HIDDEN = 32
LAYERS = 2
HEADS = 4
FFN = 64
MAX_POS = 128
WORDS = ("the", "a", "of", "and", "in", "is", "was", "who", "what", "city", "river",
         "paris", "france", "capital", "london", "song", "film", "band", "born", "year")


def vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = [f"##{c}" for c in string.ascii_lowercase + string.digits]
    return specials + list(WORDS) + chars + pieces


def _safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    offset = 0
    blobs = []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def write_tiny_bert(out: Path, *, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    words = vocab()
    (out / "config.json").write_text(json.dumps({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": FFN,
        "max_position_embeddings": MAX_POS, "vocab_size": len(words), "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu", "position_embedding_type": "absolute",
    }))
    added = [{"id": i, "content": w, "special": True} for i, w in enumerate(words[:5])]
    (out / "tokenizer.json").write_text(json.dumps({
        "added_tokens": added,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "vocab": {w: i for i, w in enumerate(words)}},
    }))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": True, "cls_token": "[CLS]", "sep_token": "[SEP]",
        "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"}))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True}))
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    t: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": rand(len(words), HIDDEN),
        "embeddings.position_embeddings.weight": rand(MAX_POS, HIDDEN),
        "embeddings.token_type_embeddings.weight": rand(2, HIDDEN),
        "embeddings.LayerNorm.weight": np.ones(HIDDEN, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(HIDDEN, np.float32),
        "pooler.dense.weight": rand(HIDDEN, HIDDEN),
        "pooler.dense.bias": np.zeros(HIDDEN, np.float32),
    }
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            t[f"{p}attention.self.{part}.weight"] = rand(HIDDEN, HIDDEN)
            t[f"{p}attention.self.{part}.bias"] = rand(HIDDEN)
        t[f"{p}attention.output.dense.weight"] = rand(HIDDEN, HIDDEN)
        t[f"{p}attention.output.dense.bias"] = rand(HIDDEN)
        t[f"{p}attention.output.LayerNorm.weight"] = np.ones(HIDDEN, np.float32)
        t[f"{p}attention.output.LayerNorm.bias"] = np.zeros(HIDDEN, np.float32)
        t[f"{p}intermediate.dense.weight"] = rand(FFN, HIDDEN)
        t[f"{p}intermediate.dense.bias"] = rand(FFN)
        t[f"{p}output.dense.weight"] = rand(HIDDEN, FFN)
        t[f"{p}output.dense.bias"] = rand(HIDDEN)
        t[f"{p}output.LayerNorm.weight"] = np.ones(HIDDEN, np.float32)
        t[f"{p}output.LayerNorm.bias"] = np.zeros(HIDDEN, np.float32)
    _safetensors(out / "model.safetensors", t)
    return out
