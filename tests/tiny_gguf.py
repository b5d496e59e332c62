"""Build a tiny random llama GGUF for fast engine tests.

The tokenizer (vocab, merges, special tokens, chat template) is copied from a
real GGUF (the default SmolLM2 model), so prompts tokenize realistically; the
weights are random (hidden 64, 2 layers), so text is gibberish but sampling,
batching, stops and caching behave exactly as with a real model.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FFN = 128


def write_tiny_gguf(
    source: Path, out: Path, *, architecture: str = "llama", seed: int = 0, n_ctx: int = 2048
) -> Path:
    reader = gguf.GGUFReader(str(source), "r")
    vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    writer = gguf.GGUFWriter(str(out), architecture)
    writer.add_name("tiny-random")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        types = [gguf.GGUFValueType(t) for t in field.types]
        value = field.contents()
        if types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, types[0], sub_type=types[1])
        else:
            writer.add_key_value(key, value, types[0])
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", rand(vocab, HIDDEN, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    head = HIDDEN // HEADS
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(KV_HEADS * head, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(KV_HEADS * head, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(HIDDEN, FFN))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
