"""Merge a peft LoRA adapter into a Hugging Face model's weights while converting.

`with_adapter(model, adapter_dir)` returns a view of `model` (an `HFModelDir`)
whose `load(name)` gives `W + scale * B @ A` for every adapted matrix, with
peft's own scale (`lora_alpha / r`, `/ sqrt(r)` with rsLoRA, per-module
`alpha_pattern` / `rank_pattern`), in float32. `convert_to_gguf(...,
adapter=DIR)` uses it, so `models pull --merge` writes one GGUF without torch
and without a merged copy of the weights on disk. The adapter is checked by
`read_adapter` (safetensors or `.bin`; the same refusals as `convert lora`).
Not covered: adapters on the embedding or a tied `lm_head`, DoRA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.hf_dir import HFModelDir, TensorRef
from edgeagent.errors import UserError


@dataclass
class MergedModelDir(HFModelDir):
    """An `HFModelDir` whose adapted weights come back merged."""

    deltas: dict[str, tuple[TensorRef, TensorRef, float]] = field(default_factory=dict)
    adapter: HFModelDir | None = None

    def load(self, name: str) -> np.ndarray[Any, Any]:
        weight = super().load(name)
        if name not in self.deltas or self.adapter is None:
            return weight
        a_ref, b_ref, scale = self.deltas[name]
        a = self.adapter.load(a_ref.name).astype(np.float32)
        b = self.adapter.load(b_ref.name).astype(np.float32)
        return weight.astype(np.float32) + np.float32(scale) * (b @ a)


def with_adapter(model: HFModelDir, adapter_dir: Path) -> MergedModelDir:
    from converters.lora_gguf import _KEY_RE, _pattern_value, read_adapter

    config, refs = read_adapter(adapter_dir)
    halves: dict[str, dict[str, TensorRef]] = {}
    for name, ref in refs.items():
        m = _KEY_RE.match(name)
        if m is None:
            raise UserError(f"{adapter_dir}: tensor {name} is not a LoRA A/B matrix")
        halves.setdefault(m.group("module"), {})[m.group("ab")] = ref
    alpha = float(config.get("lora_alpha", 8))
    rslora = bool(config.get("use_rslora"))
    deltas: dict[str, tuple[TensorRef, TensorRef, float]] = {}
    for module, ab in halves.items():
        if set(ab) != {"A", "B"}:
            raise UserError(f"{adapter_dir}: {module} lacks lora_A or lora_B")
        weight = f"{module}.weight"
        if weight not in model.tensors:
            raise UserError(f"the adapter adapts {module}, which {model.path} does not have; "
                            "is the base the model it was trained on?")
        rank = ab["A"].shape[0]
        pattern_alpha = _pattern_value(config.get("alpha_pattern"), module)
        m_alpha = float(pattern_alpha) if pattern_alpha is not None else alpha
        scale = m_alpha / math.sqrt(rank) if rslora else m_alpha / rank
        if (ab["B"].shape[0], ab["A"].shape[1]) != model.tensors[weight].shape:
            raise UserError(f"the adapter does not fit {model.path}: {module} is "
                            f"{model.tensors[weight].shape}; wrong base model?")
        deltas[weight] = (ab["A"], ab["B"], scale)
    adapter = HFModelDir(path=Path(adapter_dir), config=config, tensors=refs)
    return MergedModelDir(path=model.path, config=model.config, tensors=model.tensors,
                          deltas=deltas, adapter=adapter)
