"""Several LoRA students into one set of weight deltas: linear and TIES merging.

    deltas = [lora_deltas(Path(a)) for a in adapters]     # {base weight name: ΔW}
    combined = combine(deltas, weights=[0.5, 0.5], method="ties", density=0.5)

A LoRA adapter is a low-rank delta per target weight, ΔW = scale · B·A with
scale = alpha / r (alpha / √r for rsLoRA). Merging works on these full deltas,
so it is exact whatever the adapters' ranks:

- `linear`: ΔW = Σ wᵢ·ΔWᵢ (weights 1/n each by default: the average).
- `ties` (Yadav et al., 2023, "TIES-Merging"): each weighted delta is trimmed to its
  `density` fraction of largest magnitudes, a sign is elected per entry (the sign
  of the sum of the trimmed deltas), and the entries that agree with it are
  averaged (disjoint mean).

Not covered: DARE, SVD re-factorisation back into an adapter (the result is
merged into the base), adapters with `alpha_pattern`, `fan_in_fan_out` or
modules other than LoRA on linear layers (refused with the reason).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError

METHODS = ("linear", "ties")


def _weight_name(lora_key: str) -> tuple[str, str]:
    """`base_model.model.X.lora_A.weight` -> (`X.weight`, "A")."""
    for part in ("A", "B"):
        marker = f".lora_{part}."
        if marker in lora_key:
            module = lora_key.split(marker)[0].removeprefix("base_model.model.")
            return module + ".weight", part
    raise UserError(f"unexpected tensor {lora_key} in a LoRA adapter")


def lora_deltas(adapter: Path) -> dict[str, Any]:
    """{base weight name: ΔW (float32 tensor, shape of the weight)} of one adapter."""
    from safetensors.torch import load_file

    cfg_path, weights_path = adapter / "adapter_config.json", adapter / "adapter_model.safetensors"
    if not cfg_path.exists() or not weights_path.exists():
        raise UserError(f"{adapter} is not a LoRA adapter (needs adapter_config.json and "
                        "adapter_model.safetensors)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("alpha_pattern", "modules_to_save"):
        if cfg.get(key):
            raise UserError(f"{adapter}: adapters with `{key}` cannot be combined here")
    if cfg.get("fan_in_fan_out") or cfg.get("use_dora"):
        raise UserError(f"{adapter}: fan_in_fan_out / DoRA adapters cannot be combined here")
    alpha = float(cfg.get("lora_alpha", cfg.get("r", 8)))
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in load_file(str(weights_path)).items():
        name, part = _weight_name(key)
        pairs.setdefault(name, {})[part] = tensor.float()
    deltas: dict[str, Any] = {}
    for name, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise UserError(f"{adapter}: {name} has only half of its LoRA pair")
        r = pair["A"].shape[0]
        scale = alpha / (math.sqrt(r) if cfg.get("use_rslora") else r)
        deltas[name] = scale * (pair["B"] @ pair["A"])
    return deltas


def ties(tensors: list[Any], density: float) -> Any:
    """TIES-merge equally shaped task tensors: trim, elect sign, disjoint mean."""
    import torch

    stacked = torch.stack(tensors)
    if density < 1.0:
        flat = stacked.reshape(len(tensors), -1).abs()
        k = max(1, round(density * flat.shape[1]))
        thresholds = flat.kthvalue(flat.shape[1] - k + 1, dim=1).values
        keep = flat >= thresholds[:, None]
        stacked = stacked * keep.reshape(stacked.shape)
    sign = torch.sign(stacked.sum(dim=0))
    agree = (torch.sign(stacked) == sign) & (stacked != 0)
    total = (stacked * agree).sum(dim=0)
    count = agree.sum(dim=0).clamp(min=1)
    return total / count


def combine(deltas: list[dict[str, Any]], weights: list[float] | None = None,
            method: str = "linear", density: float = 0.5) -> dict[str, Any]:
    if method not in METHODS:
        raise UserError(f"--combine must be one of {', '.join(METHODS)}")
    if not deltas:
        raise UserError("no adapters to combine")
    n = len(deltas)
    weights = weights if weights is not None else [1.0 / n] * n
    if len(weights) != n:
        raise UserError(f"{n} adapters but {len(weights)} weights")
    if not 0.0 < density <= 1.0:
        raise UserError("--density must be in (0, 1]")
    names = sorted(set().union(*deltas))
    out: dict[str, Any] = {}
    for name in names:
        present = [(w, d[name]) for w, d in zip(weights, deltas, strict=True) if name in d]
        shapes = {tuple(t.shape) for _, t in present}
        if len(shapes) != 1:
            raise UserError(f"the adapters disagree on the shape of {name}: {sorted(shapes)}")
        if method == "linear":
            out[name] = sum(w * t for w, t in present)
        else:
            out[name] = ties([w * t for w, t in present], density)
    return out


def apply_deltas(model: Any, deltas: dict[str, Any]) -> None:
    """Add each ΔW to the model's weight of that name (in place)."""
    import torch

    params = dict(model.named_parameters())
    for name, delta in deltas.items():
        p = params.get(name)
        if p is None:
            raise UserError(f"the base has no weight {name}: the adapters do not fit it")
        if tuple(p.shape) != tuple(delta.shape):
            raise UserError(f"{name}: the base has shape {tuple(p.shape)}, the adapters "
                            f"{tuple(delta.shape)}: they do not fit the base")
        with torch.no_grad():
            p.add_(delta.to(p.dtype))
