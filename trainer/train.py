"""`distill train`: LoRA SFT of a student on trajectory records (transformers + peft).

    result = train(TrainConfig(model="base_dir", data=Path("traj.jsonl"), out=Path("lora")))

The paper's recipe as defaults: LoRA r 64, alpha 128, dropout 0.05 on all
linear layers (not the LM head), lr 2e-4 with linear warmup (3%) and decay,
2 epochs, effective batch 8 (`batch_size * grad_accum`), max length 10,240.
Each record's `messages` are rendered by `render` (only assistant tokens
trained); the loss is the mean cross-entropy over the trained tokens of a
whole accumulation group. bf16 on a GPU that has it, fp32 on CPU.

Writes to `out`: the adapter (`adapter_model.safetensors`,
`adapter_config.json`), the tokenizer and chat template, `train_log.jsonl`
(one line per optimizer step: loss, lr, tokens/s) and `train_summary.json`
(tokens, trained tokens, steps, seconds, tokens/s, first and last loss).

Not covered here: multi-GPU (`accelerate launch`), checkpoints and resume,
gradient checkpointing, the loss-curve PNG.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.agent.trajectory import read_records
from edgeagent.errors import UserError
from trainer.render import IGNORE, Rendered, collate, render_messages


@dataclass
class TrainConfig:
    model: str
    data: Path
    out: Path
    epochs: float = 2.0
    lr: float = 2e-4
    rank: int = 64
    alpha: int = 128
    dropout: float = 0.05
    batch_size: int = 1
    grad_accum: int = 8
    max_len: int = 10240
    warmup_ratio: float = 0.03
    seed: int = 0
    limit: int | None = None
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainResult:
    examples: int
    steps: int
    tokens: int  # every non-padding token the model read
    trained_tokens: int
    seconds: float
    tokens_per_s: float
    first_loss: float
    last_loss: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_examples(tokenizer: Any, data: Path, max_len: int, limit: int | None = None
                  ) -> list[Rendered]:
    records = read_records(data)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise UserError(f"{data} holds no trajectories")
    return [render_messages(tokenizer, r.messages, max_len=max_len, example_id=r.id)
            for r in records]


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def train(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None
          ) -> TrainResult:
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.hf import load_model, load_tokenizer

    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs <= 0 or cfg.rank < 1:
        raise UserError("--batch-size, --grad-accum, --rank must be >= 1 and --epochs > 0")
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    examples = load_examples(tokenizer, cfg.data, cfg.max_len, cfg.limit)
    model = load_model(cfg.model)
    device = next(model.parameters()).device
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    micro_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total_micro = max(1, round(micro_per_epoch * cfg.epochs))
    total_steps = max(1, math.ceil(total_micro / cfg.grad_accum))
    warmup = max(1, math.ceil(cfg.warmup_ratio * total_steps))
    order: list[int] = []
    rng = random.Random(cfg.seed)

    def next_batch() -> list[Rendered]:
        nonlocal order
        if len(order) < cfg.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[: cfg.batch_size], order[cfg.batch_size:]
        return [examples[i] for i in picked]

    cfg.out.mkdir(parents=True, exist_ok=True)
    log_path = cfg.out / "train_log.jsonl"
    log_path.unlink(missing_ok=True)
    losses: list[float] = []
    tokens = trained = 0
    micro = 0
    started = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        for step in range(total_steps):
            group = [next_batch() for _ in range(min(cfg.grad_accum, total_micro - micro))]
            micro += len(group)
            n_target = sum(r.n_trained for b in group for r in b)
            for g in optim.param_groups:
                g["lr"] = _lr_at(step, total_steps, warmup, cfg.lr)
            step_loss = 0.0
            for batch in group:
                t = {k: v.to(device) for k, v in
                     collate(batch, tokenizer.pad_token_id).items()}
                logits = model(input_ids=t["input_ids"],
                               attention_mask=t["attention_mask"]).logits
                shift_logits = logits[:, :-1, :].float()
                shift_labels = t["labels"][:, 1:]
                loss_sum = torch.nn.functional.cross_entropy(
                    shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                    ignore_index=IGNORE, reduction="sum")
                (loss_sum / n_target).backward()
                step_loss += float(loss_sum.detach()) / n_target
                tokens += int(t["attention_mask"].sum())
                trained += int((shift_labels != IGNORE).sum())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            optim.zero_grad(set_to_none=True)
            losses.append(step_loss)
            elapsed = time.perf_counter() - started
            entry = {"step": step + 1, "of": total_steps, "loss": round(step_loss, 6),
                     "lr": optim.param_groups[0]["lr"], "tokens": tokens,
                     "tokens_per_s": round(tokens / elapsed, 1) if elapsed else 0.0}
            log.write(json.dumps(entry) + "\n")
            log.flush()
            if on_step is not None:
                on_step(entry)
    seconds = time.perf_counter() - started
    model.save_pretrained(str(cfg.out))
    tokenizer.save_pretrained(cfg.out)
    result = TrainResult(
        examples=len(examples), steps=total_steps, tokens=tokens, trained_tokens=trained,
        seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
        first_loss=losses[0], last_loss=losses[-1], losses=losses,
    )
    summary = {**result.to_dict(), "config": {k: str(v) if isinstance(v, Path) else v
                                              for k, v in asdict(cfg).items()}}
    (cfg.out / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return result
