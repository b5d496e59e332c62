"""Data-parallel training under `accelerate launch` (DDP or FSDP), and the one-process case.

    dist = setup()                       # reads WORLD_SIZE / RANK set by accelerate launch
    model, optim = dist.prepare(model, optim)
    mine = dist.share(group)             # this rank's micro-batches of an optimizer step
    dist.backward(loss)
    total = dist.sum(value)              # all-reduced over ranks

With one process (plain `edgeagent distill train`) accelerate is not imported
and every call is the obvious no-op. Under `accelerate launch` the
micro-batches of each optimizer step are dealt round-robin to the ranks, so the
effective batch (`batch_size * grad_accum`) does not change with the number of
GPUs; the caller scales each rank's loss by the world size, because DDP and
FSDP average gradients across ranks.

Not covered: resuming an FSDP run from our checkpoint (FSDP shards the
parameters; `train` turns periodic checkpoints off under FSDP), tensor or
pipeline parallelism.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    accelerator: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        return None if self.accelerator is None else str(self.accelerator.device)

    @property
    def fsdp(self) -> bool:
        if self.accelerator is None:
            return False
        return "FSDP" in str(getattr(self.accelerator, "distributed_type", ""))

    def prepare(self, model: Any, optim: Any) -> tuple[Any, Any]:
        if self.accelerator is None:
            return model, optim
        model, optim = self.accelerator.prepare(model, optim)
        return model, optim

    def share(self, items: Sequence[T]) -> list[T]:
        return list(items[self.rank::self.world])

    def no_sync(self, model: Any, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Skip the gradient all-reduce unless `sync` (one all-reduce per rank and step)."""
        if self.accelerator is None or sync:
            return contextlib.nullcontext()
        ctx: contextlib.AbstractContextManager[Any] = self.accelerator.no_sync(model)
        return ctx

    def backward(self, loss: Any) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip(self, model: Any, params: list[Any], max_norm: float) -> None:
        import torch

        if self.accelerator is None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            self.accelerator.clip_grad_norm_(model.parameters(), max_norm)

    def sum(self, value: float) -> float:
        if self.accelerator is None:
            return value
        import torch

        t = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(t, reduction="sum").item())

    def unwrap(self, model: Any) -> Any:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def state_dict(self, model: Any) -> dict[str, Any] | None:
        """The full state dict (gathered under FSDP); None with one process."""
        if self.accelerator is None:
            return None
        state: dict[str, Any] = self.accelerator.get_state_dict(model)
        return state

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def setup() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    from accelerate import Accelerator

    # without a GPU, accelerate only goes multi-process when told to use the CPU
    acc = Accelerator(cpu=not torch.cuda.is_available())
    return Dist(rank=acc.process_index, world=acc.num_processes, accelerator=acc)
