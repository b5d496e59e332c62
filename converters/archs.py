"""What differs between the architectures we convert: qwen2, llama, qwen3, bert.

An `ArchSpec` names the GGUF architecture, writes the hyper-parameters from
`config.json`, maps Hugging Face tensor names through gguf's tensor-name map,
applies per-tensor transforms (llama's q/k rotary permutation: llama.cpp runs
llama with interleaved "normal" RoPE while HF stores q/k for the half-split
NEOX layout; qwen2/qwen3 run NEOX RoPE and need none), and adds extra tensors
(llama-3 `rope_freqs`). `bert` (sentence-embedding encoders such as
all-MiniLM-L6-v2) writes layer-norm eps, non-causal attention and the pooling
type (from sentence-transformers' `1_Pooling/config.json`, mean by default)
instead of RoPE, and drops the pooler head and `position_ids`.

Not covered: other architectures (gemma, phi, mistral's sliding window,
mixture of experts), YaRN/dynamic RoPE on llama beyond the config keys below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from edgeagent.errors import UserError

Array = np.ndarray[Any, Any]

# HF `architectures[0]` / `model_type` -> GGUF architecture
_HF_ARCHS: dict[str, str] = {
    "Qwen2ForCausalLM": "qwen2",
    "LlamaForCausalLM": "llama",
    "Qwen3ForCausalLM": "qwen3",
    "BertModel": "bert",
}
_MODEL_TYPES: dict[str, str] = {"qwen2": "qwen2", "llama": "llama", "qwen3": "qwen3",
                                "bert": "bert"}
SUPPORTED_ARCHITECTURES: tuple[str, ...] = tuple(_HF_ARCHS)

_GGUF_ARCH: dict[str, gguf.MODEL_ARCH] = {
    "qwen2": gguf.MODEL_ARCH.QWEN2,
    "llama": gguf.MODEL_ARCH.LLAMA,
    "qwen3": gguf.MODEL_ARCH.QWEN3,
    "bert": gguf.MODEL_ARCH.BERT,
}

# HF names that carry no weights llama.cpp needs
_IGNORED_SUFFIXES: tuple[str, ...] = ("rotary_emb.inv_freq",)
# ... and for bert: the [CLS] pooler head (we pool by mean) and the position-id buffer
_BERT_IGNORED: tuple[str, ...] = ("pooler.dense.weight", "pooler.dense.bias",
                                  "embeddings.position_ids")
# bert tensors llama.cpp reads as float32 rows (small; kept exact)
BERT_F32_TENSORS: tuple[str, ...] = ("position_embd.weight", "token_types.weight")
# sentence-transformers pooling modes -> llama.cpp pooling types
_POOLING: dict[str, gguf.PoolingType] = {
    "pooling_mode_mean_tokens": gguf.PoolingType.MEAN,
    "pooling_mode_cls_token": gguf.PoolingType.CLS,
}


def detect_arch(config: dict[str, Any]) -> str:
    """The GGUF architecture name for an HF config, or a UserError listing ours."""
    archs = config.get("architectures") or []
    for name in archs:
        if name in _HF_ARCHS:
            return _HF_ARCHS[name]
    model_type = str(config.get("model_type", ""))
    if not archs and model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    what = ", ".join(archs) if archs else (model_type or "unknown")
    raise UserError(
        f"unsupported architecture {what}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
    )


def rope_params(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE theta and scaling, from transformers 4 (`rope_theta`, `rope_scaling`)
    or transformers 5 (`rope_parameters`) configs."""
    params: dict[str, Any] = {}
    scaling = config.get("rope_scaling")
    if isinstance(scaling, dict):
        params.update(scaling)
    new = config.get("rope_parameters")
    if isinstance(new, dict):
        params.update(new)
    if "rope_theta" not in params and "rope_theta" in config:
        params["rope_theta"] = config["rope_theta"]
    rtype = params.get("rope_type", params.get("type", "default"))
    params["rope_type"] = rtype or "default"
    return params


def _permute_rotary(w: Array, n_head: int) -> Array:
    """HF (half-split) q/k rows -> llama.cpp's interleaved order, per head."""
    rows = w.shape[0]
    head_dim = rows // n_head
    return (
        w.reshape(n_head, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


@dataclass
class ArchSpec:
    """One model's architecture facts, derived from its config."""

    arch: str
    config: dict[str, Any]

    @property
    def gguf_arch(self) -> gguf.MODEL_ARCH:
        return _GGUF_ARCH[self.arch]

    @property
    def n_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def n_head(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def n_head_kv(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.n_head)

    @property
    def head_dim(self) -> int:
        hd = self.config.get("head_dim")
        return int(hd) if hd else int(self.config["hidden_size"]) // self.n_head

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        if self.arch == "bert":
            self._write_bert_hparams(w)
            return
        c = self.config
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "vocab_size"):
            if key not in c:
                raise UserError(f"config.json lacks {key}")
        w.add_context_length(int(c.get("max_position_embeddings", 4096)))
        w.add_embedding_length(int(c["hidden_size"]))
        w.add_block_count(self.n_layers)
        w.add_feed_forward_length(int(c["intermediate_size"]))
        w.add_head_count(self.n_head)
        w.add_head_count_kv(self.n_head_kv)
        w.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))
        w.add_vocab_size(int(c["vocab_size"]))
        w.add_rope_dimension_count(self.head_dim)
        if self.head_dim != int(c["hidden_size"]) // self.n_head:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        rope = rope_params(c)
        if "rope_theta" in rope:
            w.add_rope_freq_base(float(rope["rope_theta"]))
        rtype = rope["rope_type"]
        if rtype == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(rope["factor"]))
        elif rtype == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(float(rope["factor"]))
            orig = rope.get("original_max_position_embeddings")
            if orig:
                w.add_rope_scaling_orig_ctx_len(int(orig))
        elif rtype == "llama3" and self.arch != "llama":
            raise UserError(f"rope_type llama3 is not supported for {self.arch}")
        elif rtype not in ("default", "llama3"):
            raise UserError(f"unsupported rope scaling {rtype!r} in config.json")

    def _write_bert_hparams(self, w: gguf.GGUFWriter) -> None:
        c = self.config
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "vocab_size", "max_position_embeddings"):
            if key not in c:
                raise UserError(f"config.json lacks {key}")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise UserError("only bert models with absolute position embeddings are supported")
        w.add_context_length(int(c["max_position_embeddings"]))
        w.add_embedding_length(int(c["hidden_size"]))
        w.add_block_count(self.n_layers)
        w.add_feed_forward_length(int(c["intermediate_size"]))
        w.add_head_count(self.n_head)
        w.add_layer_norm_eps(float(c.get("layer_norm_eps", 1e-12)))
        w.add_causal_attention(False)
        w.add_pooling_type(self.pooling)
        w.add_token_type_count(int(c.get("type_vocab_size", 2)))
        w.add_vocab_size(int(c["vocab_size"]))

    @property
    def pooling(self) -> gguf.PoolingType:
        """Mean unless sentence-transformers' pooling config (`_pooling` key) says CLS."""
        modes = self.config.get("_pooling")
        if isinstance(modes, dict):
            for key, kind in _POOLING.items():
                if modes.get(key):
                    return kind
            raise UserError("unsupported sentence-transformers pooling (use mean or cls)")
        return gguf.PoolingType.MEAN

    def extra_tensors(self) -> list[tuple[str, Callable[[], Array]]]:
        """Tensors llama.cpp needs that HF computes at run time."""
        rope = rope_params(self.config)
        if self.arch == "llama" and rope["rope_type"] == "llama3":
            return [("rope_freqs.weight", lambda: _llama3_rope_factors(self.head_dim, rope))]
        return []

    def map_name(self, hf_name: str, tmap: gguf.TensorNameMap) -> str | None:
        """The GGUF name for an HF tensor; None when the tensor is dropped."""
        if hf_name.endswith(_IGNORED_SUFFIXES):
            return None
        if hf_name == "lm_head.weight" and self.tied_embeddings:
            return None
        if self.arch == "bert":
            hf_name = hf_name.removeprefix("bert.")
            if hf_name.endswith(_BERT_IGNORED):
                return None
        name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(
                f"tensor {hf_name} has no GGUF name for {self.arch}; "
                "is this a plain causal-LM (or bert encoder) checkpoint?"
            )
        return name

    def transform(self, gguf_name: str, data: Array) -> Array:
        """Per-tensor rewrites (llama's rotary permutation)."""
        if self.arch == "llama":
            if gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
                return _permute_rotary(data, self.n_head)
            if gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
                return _permute_rotary(data, self.n_head_kv)
        return data


def _llama3_rope_factors(head_dim: int, rope: dict[str, Any]) -> Array:
    """Llama-3.1/3.2 frequency-dependent RoPE scaling as per-dimension factors."""
    base = float(rope.get("rope_theta", 500000.0))
    factor = float(rope.get("factor", 8.0))
    low = float(rope.get("low_freq_factor", 1.0))
    high = float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    low_wavelen = old_ctx / low
    high_wavelen = old_ctx / high
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)
