"""One optimizer step's arithmetic: forward and backward over its micro-batches.

    steps = StepRunner(model, dist, device=…, pad_id=…, prefix=n, prefix_ids=…, …)
    loss, tokens, trained = steps.accumulate(group, n_target)   # gradients accumulated

The loss of a step is the summed cross-entropy of its trained tokens divided
by `n_target` (all trained tokens of the step), so a step is one mean over
tokens whatever the micro-batching. Logits are computed only where the next
token is trained (`logits_to_keep`). With a prefix (`--prefix-cache`, an
approximation) the shared prompt prefix is run once per step without gradient
and its KV cache handed to each example. Each rank of a distributed run takes
part in every gradient all-reduce (a rank left without a micro-batch runs the
first with zero weight).

Not covered: the optimizer, schedule and checkpoints (`trainer.train`).
"""

from __future__ import annotations

import copy
from typing import Any

from trainer.render import IGNORE, Rendered, collate


class StepRunner:
    """Forward/backward of one step's micro-batches on a (possibly wrapped) model."""

    def __init__(self, model: Any, dist: Any, *, device: str, pad_id: int, prefix: int,
                 prefix_ids: list[int], cache_arg: str, autocast: bool) -> None:
        self.model = model
        self.dist = dist
        self.device = device
        self.pad_id = pad_id
        self.prefix = prefix
        self.prefix_ids = prefix_ids[:prefix]
        self.cache_arg = cache_arg
        self.autocast = autocast

    def forward_loss(self, batch: list[Rendered], prefix_kv: Any) -> tuple[Any, int, int]:
        """(summed loss over trained tokens, tokens read, tokens trained) of one batch."""
        import torch

        t = {k: v.to(self.device) for k, v in collate(batch, self.pad_id).items()}
        ids, labels, mask = t["input_ids"], t["labels"], t["attention_mask"]
        # position j predicts token j+1: keep logits only where that token is trained
        targets = labels[:, self.prefix + 1:]
        keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
        kwargs: dict[str, Any] = {"logits_to_keep": keep}
        if prefix_kv is not None:
            kwargs[self.cache_arg] = copy.deepcopy(prefix_kv)
            kwargs["use_cache"] = True
            out = self.model(input_ids=ids[:, self.prefix:], **kwargs)
        else:
            out = self.model(input_ids=ids, attention_mask=mask, **kwargs)
        logits = out.logits.float()
        picked = targets[:, keep]
        loss_sum = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), picked.reshape(-1),
            ignore_index=IGNORE, reduction="sum")
        return loss_sum, int(mask.sum()), int((picked != IGNORE).sum())

    def _prefix_cache(self) -> Any:
        import torch

        with torch.no_grad():
            first = torch.tensor([self.prefix_ids], device=self.device)
            out = self.model(input_ids=first, use_cache=True)
        return getattr(out, "cache", None) or out.past_key_values

    def accumulate(self, group: list[list[Rendered]], n_target: int
                   ) -> tuple[float, float, float]:
        """Forward and backward over one step's micro-batches: (loss, tokens, trained)."""
        import torch

        dist = self.dist
        # autocast caches its bf16 copies of the weights until the context exits:
        # one context per step, so every step computes with the updated LoRA weights
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            prefix_kv = self._prefix_cache() if self.prefix else None
            step_loss = n_tok_step = n_tr_step = 0.0
            # every rank takes part in each gradient all-reduce: a rank left without
            # a micro-batch runs the first one with zero weight
            work = [(b, 1.0) for b in dist.share(group)] or [(group[0], 0.0)]
            for i, (batch, weight) in enumerate(work):
                # gradients are all-reduced once per step, after the last micro-batch
                with dist.no_sync(self.model, sync=i == len(work) - 1):
                    loss_sum, n_tok, n_tr = self.forward_loss(batch, prefix_kv)
                    # DDP/FSDP average gradients over ranks: scale back up to a sum
                    dist.backward(loss_sum * (weight * dist.world / n_target))
                step_loss += weight * float(loss_sum.detach()) / n_target
                n_tok_step += weight * n_tok
                n_tr_step += weight * n_tr
        return step_loss, n_tok_step, n_tr_step
