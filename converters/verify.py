"""Check a GGUF file against its Hugging Face source: same prompts, both engines.

`verify_gguf(model_dir, gguf_path)` tokenises each prompt with the HF tokenizer
and with llama.cpp (token ids must be identical), runs both models on the HF
ids, and reports per prompt the top-1 agreement over positions and the max
|Δlogit|. A file whose weights are F32/F16/BF16 must match within tolerance
(`ok` is False otherwise); for quantized files the numbers are informative and
only tokenisation is required to match.

Not covered: generation quality, batch/sequence-parallel checks, models that
transformers cannot load on CPU. Needs torch, transformers and llama_cpp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeagent.errors import UserError

DEFAULT_PROMPTS: tuple[str, ...] = (
    "The capital of France is",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 40))",
    "In 1969, 3 astronauts flew 384400 km to the Moon. Ünïcödé 東京 🚀",
    "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n",
)
# max |Δlogit| allowed, relative to max(1, max |logit|), by weight type
TOLERANCES: dict[str, float] = {"F32": 1e-3, "F16": 1e-2, "BF16": 3e-2}


@dataclass(frozen=True)
class PromptCheck:
    """One prompt's comparison."""

    prompt: str
    n_tokens: int
    tokens_match: bool
    top1_agree: float  # fraction of positions
    next_token_match: bool  # the greedy next token after the prompt is the same
    max_abs_diff: float
    max_abs_logit: float
    first_mismatch: int | None = None  # token index where tokenisation differs


@dataclass
class VerifyReport:
    """All prompts, and whether the file passes."""

    gguf_path: Path
    weight_type: str  # F32, F16, BF16 or a quantized type name
    tolerance: float | None
    checks: list[PromptCheck] = field(default_factory=list)

    @property
    def strict(self) -> bool:
        return self.tolerance is not None

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)

    @property
    def ok(self) -> bool:
        for c in self.checks:
            if not c.tokens_match:
                return False
            if self.tolerance is not None:
                if c.top1_agree < 1.0:
                    return False
                if c.max_abs_diff > self.tolerance * max(1.0, c.max_abs_logit):
                    return False
        return True


def weight_type(path: Path, metadata: dict[str, str] | None = None) -> str:
    """The file's weight type (F16, Q4_0, Q4_K_M, ...): `general.file_type` (from
    llama.cpp's `metadata` when given: parsing the header here is slow), else
    the type holding most matrix elements."""
    import gguf

    if metadata and "general.file_type" in metadata:
        try:
            name = gguf.LlamaFileType(int(metadata["general.file_type"])).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    reader = gguf.GGUFReader(path)
    counts: dict[str, int] = {}
    for t in reader.tensors:
        if len(t.shape) >= 2:
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_elements)
    if not counts:
        raise UserError(f"{path} has no weight matrices")
    return max(counts, key=lambda k: counts[k])


def verify_gguf(
    model_dir: Path | str,
    gguf_path: Path | str,
    *,
    prompts: tuple[str, ...] | list[str] = DEFAULT_PROMPTS,
    tolerance: float | None = None,
    threads: int | None = None,
) -> VerifyReport:
    """Compare `gguf_path` with the HF model in `model_dir` on `prompts`."""
    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    if not (model_dir / "config.json").exists():
        raise UserError(f"{model_dir} has no config.json; is it a Hugging Face model directory?")
    if not gguf_path.is_file():
        raise UserError(f"{gguf_path} does not exist")
    try:
        import llama_cpp
        import torch
        import transformers
    except ImportError as exc:
        raise UserError(
            f"verify needs torch, transformers and llama-cpp-python ({exc.name} is missing)"
        ) from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    hf.eval()
    ids_list = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    n_ctx = max(64, max(len(ids) for ids in ids_list) + 8)
    llm = llama_cpp.Llama(
        model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
        verbose=False, n_threads=threads or None, n_gpu_layers=0,
        type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,  # no f16 KV rounding
    )
    wtype = weight_type(gguf_path, llm.metadata)
    tol = tolerance if tolerance is not None else TOLERANCES.get(wtype)
    report = VerifyReport(gguf_path=gguf_path, weight_type=wtype, tolerance=tol)
    try:
        for prompt, hf_ids in zip(prompts, ids_list, strict=True):
            ll_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            match = list(ll_ids) == hf_ids
            first = None
            if not match:
                pairs = zip(ll_ids, hf_ids, strict=False)
                first = next(
                    (i for i, (x, y) in enumerate(pairs) if x != y), min(len(ll_ids), len(hf_ids))
                )
            with torch.no_grad():
                hf_logits = hf(torch.tensor([hf_ids])).logits[0].float().numpy()
            llm.reset()
            llm.eval(hf_ids)
            ll_logits = np.asarray(llm.scores[: len(hf_ids)], dtype=np.float32)
            vocab = min(hf_logits.shape[-1], ll_logits.shape[-1])
            a, b = hf_logits[:, :vocab], ll_logits[:, :vocab]
            report.checks.append(
                PromptCheck(
                    prompt=prompt,
                    n_tokens=len(hf_ids),
                    tokens_match=match,
                    top1_agree=float(np.mean(a.argmax(-1) == b.argmax(-1))),
                    next_token_match=bool(a[-1].argmax() == b[-1].argmax()),
                    max_abs_diff=float(np.max(np.abs(a - b))),
                    max_abs_logit=float(np.max(np.abs(a))),
                    first_mismatch=first,
                )
            )
    finally:
        llm.close()
    return report


def format_report(report: VerifyReport) -> list[tuple[str, ...]]:
    """Rows for a table: prompt, tokens, ids, top-1, next token, max |Δlogit|, max |logit|."""
    rows: list[tuple[str, ...]] = []
    for c in report.checks:
        shown = c.prompt.replace("\n", "⏎")
        shown = shown if len(shown) <= 28 else shown[:27] + "…"
        ids = "identical" if c.tokens_match else f"DIFFER at {c.first_mismatch}"
        rows.append((shown, str(c.n_tokens), ids, f"{c.top1_agree:.0%}",
                     "same" if c.next_token_match else "DIFFERENT",
                     f"{c.max_abs_diff:.2e}", f"{c.max_abs_logit:.2f}"))
    return rows




def token_ids(model_dir: Path | str, gguf_path: Path | str,
              prompt: str) -> tuple[list[int], list[int]] | None:
    """(HF tokenizer ids, llama.cpp ids) of `prompt` — the cheap half of `verify_gguf`,
    loading no weights; None when transformers is not installed."""
    try:
        import transformers
    except ImportError:
        return None
    import llama_cpp

    transformers.utils.logging.set_verbosity_error()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    want = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        got = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    finally:
        llm.close()
    return want, got
