"""What a training run needs around the model: precision, schedule, OOM advice, the log.

    precision = resolve_precision("auto", "cpu")    # "bf16" on AVX512-BF16/AMX, else "fp32"
    lr = lr_at(step, total, warmup, 2e-4)           # linear warmup, then linear decay
    plot_losses(losses, out / "loss.png")           # None without matplotlib

Not covered: the optimisation itself (`trainer.train`, `trainer.steps`).
"""

from __future__ import annotations

from pathlib import Path

from edgeagent.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")


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


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "can't allocate memory" in text or "failed to allocate" in text


def truncate_log(path: Path, steps: int) -> None:
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
