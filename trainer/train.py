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

Not covered: packing, multi-GPU (`accelerate launch` data parallelism), QLoRA.
"""

from __future__ import annotations

import copy
import inspect
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
from trainer.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from trainer.distributed import setup as setup_distributed
from trainer.render import IGNORE, Rendered, collate, render_messages

PRECISIONS = ("auto", "fp32", "bf16")


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


def shared_prefix(examples: list[Rendered]) -> int:
    """Tokens every example starts with and none of which is trained (may be 0)."""
    first = examples[0]
    n = len(first.input_ids) - 1
    for r in examples[1:]:
        n = min(n, len(r.input_ids) - 1)
        i = 0
        while i < n and r.input_ids[i] == first.input_ids[i]:
            i += 1
        n = i
    for r in examples:
        trained = [i for i, x in enumerate(r.labels) if x != IGNORE]
        if trained:
            n = min(n, trained[0] - 1)  # the token before the first label stays in the suffix
    return max(0, n)


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """`bf16` (weights on GPU, autocast on CPU) or `fp32`."""
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if _cpu_has_bf16() else "fp32"


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "can't allocate memory" in text or "failed to allocate" in text


def train(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None
          ) -> TrainResult:
    try:
        return _train(cfg, on_step)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or _is_oom(exc):
            raise UserError(
                "out of memory while training: lower --max-len, use --batch-size 1 with a "
                "larger --grad-accum, add --gradient-checkpointing, or a smaller --rank "
                f"(the last checkpoint is in {cfg.out / 'checkpoint'})") from None
        raise


def _train(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None) -> TrainResult:
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.hf import default_device, load_model, load_tokenizer

    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs <= 0 or cfg.rank < 1:
        raise UserError("--batch-size, --grad-accum, --rank must be >= 1 and --epochs > 0")
    if cfg.prefix_cache and cfg.gradient_checkpointing:
        raise UserError("--prefix-cache and --gradient-checkpointing do not go together "
                        "(checkpointed layers drop the cache)")
    if cfg.prefix_cache and cfg.batch_size != 1:
        raise UserError("--prefix-cache needs --batch-size 1 (use --grad-accum for the batch)")
    dist = setup_distributed()
    device = dist.device or default_device()
    precision = resolve_precision(cfg.precision, device)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    settings["precision"] = precision
    save_every = 0 if dist.fsdp else cfg.save_every  # FSDP shards params: no checkpoint
    ckpt_dir = cfg.out / "checkpoint"
    saved = load_checkpoint(ckpt_dir) if cfg.resume else None
    if saved is not None:
        check_compatible(saved["settings"], settings, ckpt_dir)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed + dist.rank)  # dropout differs by rank, the order does not
    tokenizer = load_tokenizer(cfg.model)
    examples = load_examples(tokenizer, cfg.data, cfg.max_len, cfg.limit)
    dtype = torch.bfloat16 if precision == "bf16" and device == "cuda" else torch.float32
    model = load_model(cfg.model, dtype=dtype, device=device)
    autocast = precision == "bf16" and device == "cpu"
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    prefix = shared_prefix(examples) if cfg.prefix_cache else 0
    # transformers 5.x renamed `past_key_values` to `cache`
    cache_arg = ("cache" if "cache" in inspect.signature(model.get_base_model().forward).parameters
                 else "past_key_values")
    peft_model = model
    if cfg.prefix_cache and prefix < 8:
        raise UserError("--prefix-cache: the examples share no untrained prompt prefix")

    micro_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total_micro = max(1, round(micro_per_epoch * cfg.epochs))
    total_steps = max(1, math.ceil(total_micro / cfg.grad_accum))
    warmup = max(1, math.ceil(cfg.warmup_ratio * total_steps))
    order: list[int] = []
    rng = random.Random(cfg.seed)
    losses: list[float] = []
    tokens = trained = micro = start_step = 0
    elapsed_before = 0.0
    if saved is not None:
        values = dict(named)
        for name, tensor in saved["params"].items():
            values[name].data.copy_(tensor)
        optim.load_state_dict(saved["optim"])
        order, micro, start_step = list(saved["order"]), saved["micro"], saved["step"]
        losses, tokens, trained = list(saved["losses"]), saved["tokens"], saved["trained"]
        elapsed_before = float(saved["seconds"])
        rng.setstate(saved["py_rng"])
        torch.set_rng_state(saved["torch_rng"])

    def next_batch() -> list[Rendered]:
        nonlocal order
        if len(order) < cfg.batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[: cfg.batch_size], order[cfg.batch_size:]
        return [examples[i] for i in picked]

    def checkpoint(step: int, seconds: float) -> None:
        if not dist.is_main:
            return
        save_checkpoint(ckpt_dir, {
            "settings": settings, "step": step, "micro": micro, "order": order,
            "losses": losses, "tokens": tokens, "trained": trained, "seconds": seconds,
            "params": {n: p.detach().cpu().clone() for n, p in named},
            "optim": optim.state_dict(), "py_rng": rng.getstate(),
            "torch_rng": torch.get_rng_state()})

    def forward_loss(batch: list[Rendered], prefix_kv: Any) -> tuple[Any, int, int]:
        t = {k: v.to(device) for k, v in collate(batch, tokenizer.pad_token_id).items()}
        ids, labels, mask = t["input_ids"], t["labels"], t["attention_mask"]
        # position j predicts token j+1: keep logits only where that token is trained
        targets = labels[:, prefix + 1:]
        keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
        kwargs: dict[str, Any] = {"logits_to_keep": keep}
        if prefix_kv is not None:
            kwargs[cache_arg] = copy.deepcopy(prefix_kv)
            kwargs["use_cache"] = True
            out = model(input_ids=ids[:, prefix:], **kwargs)
        else:
            out = model(input_ids=ids, attention_mask=mask, **kwargs)
        logits = out.logits.float()
        picked = targets[:, keep]
        loss_sum = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), picked.reshape(-1),
            ignore_index=IGNORE, reduction="sum")
        return loss_sum, int(mask.sum()), int((picked != IGNORE).sum())

    model, optim = dist.prepare(model, optim)

    def accumulate(group: list[list[Rendered]], n_target: int) -> tuple[float, float, float]:
        """Forward and backward over one step's micro-batches: (loss, tokens, trained)."""
        # autocast caches its bf16 copies of the weights until the context exits:
        # one context per step, so every step computes with the updated LoRA weights
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prefix_kv = None
            if prefix:
                with torch.no_grad():
                    first = torch.tensor([examples[0].input_ids[:prefix]], device=device)
                    out = model(input_ids=first, use_cache=True)
                    prefix_kv = getattr(out, "cache", None) or out.past_key_values
            step_loss = n_tok_step = n_tr_step = 0.0
            # every rank takes part in each gradient all-reduce: a rank left without
            # a micro-batch runs the first one with zero weight
            work = [(b, 1.0) for b in dist.share(group)] or [(group[0], 0.0)]
            for i, (batch, weight) in enumerate(work):
                # gradients are all-reduced once per step, after the last micro-batch
                with dist.no_sync(model, sync=i == len(work) - 1):
                    loss_sum, n_tok, n_tr = forward_loss(batch, prefix_kv)
                    # DDP/FSDP average gradients over ranks: scale back up to a sum
                    dist.backward(loss_sum * (weight * dist.world / n_target))
                step_loss += weight * float(loss_sum.detach()) / n_target
                n_tok_step += weight * n_tok
                n_tr_step += weight * n_tr
        return step_loss, n_tok_step, n_tr_step
    cfg.out.mkdir(parents=True, exist_ok=True)
    log_path = cfg.out / "train_log.jsonl"
    if not dist.is_main:
        log_path = cfg.out / f".train_log.rank{dist.rank}.jsonl"  # only rank 0 keeps a log
    if saved is None:
        log_path.unlink(missing_ok=True)
    else:
        _truncate_log(log_path, start_step)
    started = time.perf_counter()
    last_step = start_step
    stop_at = total_steps if cfg.max_steps is None else min(total_steps,
                                                            start_step + cfg.max_steps)
    with open(log_path, "a", encoding="utf-8") as log:
        try:
            for step in range(start_step, stop_at):
                group = [next_batch() for _ in range(min(cfg.grad_accum, total_micro - micro))]
                n_target = sum(r.n_trained for b in group for r in b)
                for g in optim.param_groups:
                    g["lr"] = _lr_at(step, total_steps, warmup, cfg.lr)
                step_loss, n_tok_step, n_tr_step = accumulate(group, n_target)
                step_loss = dist.sum(step_loss)
                tokens += int(dist.sum(n_tok_step))
                trained += int(dist.sum(n_tr_step))
                dist.clip(model, params, 1.0)
                optim.step()
                optim.zero_grad(set_to_none=True)
                micro += len(group)
                losses.append(step_loss)
                last_step = step + 1
                elapsed = elapsed_before + time.perf_counter() - started
                entry = {"step": step + 1, "of": total_steps, "loss": round(step_loss, 6),
                         "lr": optim.param_groups[0]["lr"], "tokens": tokens,
                         "tokens_per_s": round(tokens / elapsed, 1) if elapsed else 0.0,
                         "seconds": round(elapsed, 2)}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                if save_every > 0 and last_step % save_every == 0 \
                        and last_step < total_steps:
                    checkpoint(last_step, elapsed)
                if on_step is not None:
                    on_step(entry)
        except KeyboardInterrupt:
            checkpoint(last_step, elapsed_before + time.perf_counter() - started)
            raise UserError(f"interrupted after step {last_step}/{total_steps}; checkpoint in "
                            f"{ckpt_dir}: run the same command again to resume") from None
    seconds = elapsed_before + time.perf_counter() - started
    if last_step < total_steps:
        checkpoint(last_step, seconds)
        raise UserError(f"stopped after step {last_step}/{total_steps} (--max-steps); "
                        f"checkpoint in {ckpt_dir}: run again to resume")
    full_state = dist.state_dict(model)
    if dist.is_main:
        if full_state is None:
            peft_model.save_pretrained(str(cfg.out))
        else:
            dist.unwrap(model).save_pretrained(str(cfg.out), state_dict=full_state)
        tokenizer.save_pretrained(cfg.out)
    result = TrainResult(
        examples=len(examples), steps=total_steps, tokens=tokens, trained_tokens=trained,
        seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1) if seconds else 0.0,
        first_loss=losses[0], last_loss=losses[-1], losses=losses, resumed_from=start_step,
        prefix_tokens=prefix, precision=precision,
    )
    if dist.is_main:
        summary = {**result.to_dict(), "config": settings, "processes": dist.world}
        (cfg.out / "train_summary.json").write_text(json.dumps(summary, indent=2),
                                                    encoding="utf-8")
        plot_losses(losses, cfg.out / "loss.png")
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
    else:
        log_path.unlink(missing_ok=True)
    dist.barrier()
    return result


def _truncate_log(path: Path, steps: int) -> None:
    """Keep the first `steps` lines of the log (a resumed run rewrites what follows)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()[:steps]
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")


def plot_losses(losses: list[float], out: Path) -> Path | None:
    """The loss curve as a PNG; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(range(1, len(losses) + 1), losses, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (trained tokens)")
    ax.set_title("distill train")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
