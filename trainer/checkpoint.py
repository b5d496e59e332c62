"""Training checkpoints: save and resume a LoRA run exactly where it stopped.

    save_checkpoint(out / "checkpoint", state)      # atomic: temp dir, then rename
    state = load_checkpoint(out / "checkpoint")     # None when there is none

A checkpoint is one directory holding `trainer_state.pt`: the trainable
(LoRA) parameters, the optimizer state, the step counters, the example order
still to come, Python's and torch's random states (dropout), the losses so far
and the run's settings. `check_compatible` refuses to resume a run whose
settings differ (another data file, rank, learning rate…), so a resumed run is
the same run. The directory is replaced atomically: a kill while saving leaves
the previous checkpoint whole.

Not covered: several checkpoints kept side by side (only the latest is kept),
sharded (FSDP) optimizer states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeagent.atomic import atomic_folder, previous_folder
from edgeagent.errors import UserError

STATE_FILE = "trainer_state.pt"

# settings that must match for a resumed run to be the same run
RESUME_KEYS = ("model", "data", "epochs", "lr", "rank", "alpha", "dropout", "batch_size",
               "grad_accum", "max_len", "seed", "limit", "target_modules", "prefix_cache",
               "precision")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    with atomic_folder(path) as tmp:
        torch.save(state, tmp / STATE_FILE)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    import torch

    for candidate in (path, previous_folder(path)):
        f = candidate / STATE_FILE
        if f.exists():
            try:
                state: dict[str, Any] = torch.load(f, map_location="cpu", weights_only=False)
            except Exception as exc:  # a torn file: say so, do not crash
                raise UserError(f"checkpoint {f} is unreadable ({type(exc).__name__}); "
                                "delete it or pass --no-resume") from None
            return state
    return None


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    diff = [k for k in RESUME_KEYS if str(saved.get(k)) != str(current.get(k))]
    if diff:
        k = diff[0]
        raise UserError(f"{where} is a checkpoint of a different run ({k}: "
                        f"{saved.get(k)} there, {current.get(k)} now); pass --no-resume to "
                        "start over or use another --out")
