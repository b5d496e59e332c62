"""`distill train`: LoRA SFT of a student on trajectory records (transformers + peft).

    result = train(TrainConfig(model="base_dir", data=Path("traj.jsonl"), out=Path("lora")))

The paper's recipe as defaults: LoRA r 64, alpha 128, dropout 0.05 on all
linear layers (not the LM head), lr 2e-4 with linear warmup (3%) and decay,
2 epochs, effective batch 8 (`batch_size * grad_accum`), max length 10,240.
Each record's `messages` are rendered by `render` (only assistant tokens
trained); the loss is the mean cross-entropy over the trained tokens of a
whole accumulation group.

Speed on a CPU (these change the arithmetic, not the objective):
- logits are computed only at the trained positions (`logits_to_keep`): the
  LM head over a 49k vocabulary is a quarter of a small model's work;
- precision `auto`: bf16 weights on a GPU that has bf16, bf16 autocast on a
  CPU with AVX512-BF16/AMX, fp32 elsewhere;
- `prefix_cache` (opt-in, an approximation): the prompt prefix every example
  shares (the system prompt) is run once per optimizer step without gradient
  and its KV cache reused by each example. The forward pass is exact; the
  gradient through the prefix's keys and values is dropped.

Checkpoints (`trainer.checkpoint`) every `save_every` steps and on Ctrl-C into
`out/checkpoint/`; a rerun with the same settings resumes from it exactly
(same order, same dropout draws). Writes to `out`: the adapter
(`adapter_model.safetensors`, `adapter_config.json`), the tokenizer and chat
template, `train_log.jsonl` (one line per optimizer step: loss, lr, tokens/s),
`train_summary.json` and `loss.png` (when matplotlib is installed).

Modules: `examples` (records to token ids), `steps` (one step's forward and
backward), `runtime` (precision, schedule, log, plot), `checkpoint`,
`distributed`. Not covered: packing, QLoRA.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError
from trainer.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from trainer.distributed import setup as setup_distributed
from trainer.examples import epoch_order, load_examples, shared_prefix
from trainer.render import Rendered
from trainer.runtime import (
    PRECISIONS,
    is_oom,
    lr_at,
    plot_losses,
    resolve_precision,
    truncate_log,
)
from trainer.steps import StepRunner

__all__ = ["PRECISIONS", "TrainConfig", "TrainResult", "load_examples", "resolve_precision",
           "shared_prefix", "train"]
OnStep = Callable[[dict[str, Any]], None]


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
    precision: str = "auto"
    prefix_cache: bool = False
    group_by_length: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 50
    resume: bool = True
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps this run


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
    resumed_from: int = 0
    prefix_tokens: int = 0
    precision: str = "fp32"
    examples_per_s: float = 0.0
    padding: float = 0.0  # fraction of the batches' positions that were padding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(cfg: TrainConfig, on_step: OnStep | None = None) -> TrainResult:
    try:
        return _Run(cfg).run(on_step)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or is_oom(exc):
            raise UserError(
                "out of memory while training: lower --max-len, use --batch-size 1 with a "
                "larger --grad-accum, add --gradient-checkpointing, or a smaller --rank "
                f"(the last checkpoint is in {cfg.out / 'checkpoint'})") from None
        raise


def _check(cfg: TrainConfig) -> None:
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs <= 0 or cfg.rank < 1:
        raise UserError("--batch-size, --grad-accum, --rank must be >= 1 and --epochs > 0")
    if cfg.prefix_cache and cfg.gradient_checkpointing:
        raise UserError("--prefix-cache and --gradient-checkpointing do not go together "
                        "(checkpointed layers drop the cache)")
    if cfg.prefix_cache and cfg.batch_size != 1:
        raise UserError("--prefix-cache needs --batch-size 1 (use --grad-accum for the batch)")


class _Run:
    """One training run: set-up, optional resume, the step loop, the saved adapter."""

    model: Any
    optim: Any
    cache_arg: str

    def __init__(self, cfg: TrainConfig) -> None:
        import torch

        from trainer.hf import default_device

        _check(cfg)
        self.cfg = cfg
        self.dist = dist = setup_distributed()
        self.device = dist.device or default_device()
        self.precision = resolve_precision(cfg.precision, self.device)
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
        settings["precision"] = self.precision
        self.settings = settings
        self.save_every = 0 if dist.fsdp else cfg.save_every  # FSDP shards: no checkpoint
        self.ckpt_dir = cfg.out / "checkpoint"
        self.saved = load_checkpoint(self.ckpt_dir) if cfg.resume else None
        if self.saved is not None:
            check_compatible(self.saved["settings"], settings, self.ckpt_dir)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed + dist.rank)  # dropout differs by rank, the order does not
        self._build_model()
        micro_per_epoch = math.ceil(len(self.examples) / cfg.batch_size)
        self.total_micro = max(1, round(micro_per_epoch * cfg.epochs))
        self.total_steps = max(1, math.ceil(self.total_micro / cfg.grad_accum))
        self.warmup = max(1, math.ceil(cfg.warmup_ratio * self.total_steps))
        self.order: list[int] = []
        self.rng = random.Random(cfg.seed)
        self.losses: list[float] = []
        self.tokens = self.trained = self.micro = self.start_step = 0
        self.elapsed_before = 0.0
        self.padded = self.real = 0  # positions in padded batches / real tokens (this run)
        if self.saved is not None:
            self._restore(self.saved)
        self.model, self.optim = dist.prepare(self.model, self.optim)
        self.steps = StepRunner(
            self.model, dist, device=self.device, pad_id=self.tokenizer.pad_token_id,
            prefix=self.prefix, prefix_ids=self.examples[0].input_ids, cache_arg=self.cache_arg,
            autocast=self.precision == "bf16" and self.device == "cpu")

    def _build_model(self) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from trainer.hf import load_model, load_tokenizer

        cfg = self.cfg
        self.tokenizer = load_tokenizer(cfg.model)
        self.examples = load_examples(self.tokenizer, cfg.data, cfg.max_len, cfg.limit)
        dtype = (torch.bfloat16 if self.precision == "bf16" and self.device == "cuda"
                 else torch.float32)
        model = load_model(cfg.model, dtype=dtype, device=self.device)
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        model.train()
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        optim = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=0.0)
        self.prefix = shared_prefix(self.examples) if cfg.prefix_cache else 0
        # transformers 5.x renamed `past_key_values` to `cache`
        forward = inspect.signature(model.get_base_model().forward).parameters
        cache_arg = "cache" if "cache" in forward else "past_key_values"
        self.peft_model = model
        if cfg.prefix_cache and self.prefix < 8:
            raise UserError("--prefix-cache: the examples share no untrained prompt prefix")
        self.model, self.optim, self.cache_arg = model, optim, cache_arg

    def _restore(self, saved: dict[str, Any]) -> None:
        import torch

        values = dict(self.named)
        for name, tensor in saved["params"].items():
            values[name].data.copy_(tensor)
        self.optim.load_state_dict(saved["optim"])
        self.order, self.micro = list(saved["order"]), saved["micro"]
        self.start_step = saved["step"]
        self.losses, self.tokens = list(saved["losses"]), saved["tokens"]
        self.trained = saved["trained"]
        self.elapsed_before = float(saved["seconds"])
        self.rng.setstate(saved["py_rng"])
        torch.set_rng_state(saved["torch_rng"])

    def next_batch(self) -> list[Rendered]:
        size = self.cfg.batch_size
        if len(self.order) < size:
            self.order += epoch_order([len(r.input_ids) for r in self.examples], size,
                                      self.rng, self.cfg.group_by_length)
        picked, self.order = self.order[:size], self.order[size:]
        batch = [self.examples[i] for i in picked]
        width = max(len(r.input_ids) for r in batch)
        self.padded += width * len(batch)
        self.real += sum(len(r.input_ids) for r in batch)
        return batch

    def checkpoint(self, step: int, seconds: float) -> None:
        import torch

        if not self.dist.is_main:
            return
        save_checkpoint(self.ckpt_dir, {
            "settings": self.settings, "step": step, "micro": self.micro, "order": self.order,
            "losses": self.losses, "tokens": self.tokens, "trained": self.trained,
            "seconds": seconds,
            "params": {n: p.detach().cpu().clone() for n, p in self.named},
            "optim": self.optim.state_dict(), "py_rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state()})

    def _step(self, step: int) -> dict[str, Any]:
        """One optimizer step; its log entry."""
        cfg, dist = self.cfg, self.dist
        group = [self.next_batch()
                 for _ in range(min(cfg.grad_accum, self.total_micro - self.micro))]
        n_target = sum(r.n_trained for b in group for r in b)
        for g in self.optim.param_groups:
            g["lr"] = lr_at(step, self.total_steps, self.warmup, cfg.lr)
        step_loss, n_tok_step, n_tr_step = self.steps.accumulate(group, n_target)
        step_loss = dist.sum(step_loss)
        self.tokens += int(dist.sum(n_tok_step))
        self.trained += int(dist.sum(n_tr_step))
        dist.clip(self.model, self.params, 1.0)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        self.micro += len(group)
        self.losses.append(step_loss)
        self.elapsed = elapsed = self.elapsed_before + time.perf_counter() - self.started
        return {"step": step + 1, "of": self.total_steps, "loss": round(step_loss, 6),
                "lr": self.optim.param_groups[0]["lr"], "tokens": self.tokens,
                "tokens_per_s": round(self.tokens / elapsed, 1) if elapsed else 0.0,
                "seconds": round(elapsed, 2)}

    def run(self, on_step: OnStep | None) -> TrainResult:
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        log_path = cfg.out / "train_log.jsonl"
        if not self.dist.is_main:
            log_path = cfg.out / f".train_log.rank{self.dist.rank}.jsonl"  # rank 0 keeps a log
        if self.saved is None:
            log_path.unlink(missing_ok=True)
        else:
            truncate_log(log_path, self.start_step)
        self.started = time.perf_counter()
        last_step = self.start_step
        stop_at = self.total_steps if cfg.max_steps is None else min(
            self.total_steps, self.start_step + cfg.max_steps)
        with open(log_path, "a", encoding="utf-8") as log:
            try:
                for step in range(self.start_step, stop_at):
                    entry = self._step(step)
                    last_step = step + 1
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    if self.save_every > 0 and last_step % self.save_every == 0 \
                            and last_step < self.total_steps:
                        self.checkpoint(last_step, self.elapsed)
                    if on_step is not None:
                        on_step(entry)
            except KeyboardInterrupt:
                self.checkpoint(last_step, self._seconds())
                raise UserError(f"interrupted after step {last_step}/{self.total_steps}; "
                                f"checkpoint in {self.ckpt_dir}: run the same command again "
                                "to resume") from None
        seconds = self._seconds()
        if last_step < self.total_steps:
            self.checkpoint(last_step, seconds)
            raise UserError(f"stopped after step {last_step}/{self.total_steps} (--max-steps); "
                            f"checkpoint in {self.ckpt_dir}: run again to resume")
        return self._finish(seconds, log_path)

    def _seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _finish(self, seconds: float, log_path: Path) -> TrainResult:
        cfg, dist = self.cfg, self.dist
        full_state = dist.state_dict(self.model)
        if dist.is_main:
            if full_state is None:
                self.peft_model.save_pretrained(str(cfg.out))
            else:
                dist.unwrap(self.model).save_pretrained(str(cfg.out), state_dict=full_state)
            self.tokenizer.save_pretrained(cfg.out)
        tokens, losses = self.tokens, self.losses
        result = TrainResult(
            examples=len(self.examples), steps=self.total_steps, tokens=tokens,
            trained_tokens=self.trained, seconds=round(seconds, 3),
            tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
            first_loss=losses[0], last_loss=losses[-1], losses=losses,
            resumed_from=self.start_step, prefix_tokens=self.prefix, precision=self.precision,
            examples_per_s=round(self.micro * cfg.batch_size / seconds, 3) if seconds else 0.0,
            padding=round(1.0 - self.real / self.padded, 4) if self.padded else 0.0,
        )
        if dist.is_main:
            summary = {**result.to_dict(), "config": self.settings, "processes": dist.world}
            (cfg.out / "train_summary.json").write_text(json.dumps(summary, indent=2),
                                                        encoding="utf-8")
            plot_losses(losses, cfg.out / "loss.png")
            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        else:
            log_path.unlink(missing_ok=True)
        dist.barrier()
        return result
