"""`edgeagent convert gguf|lora|quantize|verify`: Hugging Face model -> GGUF -> quantized GGUF.

Top-level imports stay light (argparse only): `edgeagent --help` imports this
module. The work lives in the `converters` package, imported by the handlers;
it needs the `train` extra for `verify` (torch, transformers) and
llama-cpp-python for `quantize` and `verify`.

`convert lora` turns a peft LoRA adapter into a llama.cpp LoRA GGUF, used with
`edgeagent ask --lora`. Not covered here: DoRA and other peft variants (merge
them with `edgeagent distill merge` and convert the merged model instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError
from edgeagent.progress import progress_callback

_QUANT_HELP = "Q4_K_M, Q4_0, Q5_K_M, Q8_0, Q6_K, Q4_K_S, Q5_0, Q5_1, Q4_1, Q3_K_M, Q2_K, …"


def register(sub: Any) -> None:
    """Add the `convert` group to the top-level subparsers."""
    group = sub.add_parser(
        "convert",
        help="convert a Hugging Face model (or LoRA adapter) to GGUF, quantize, verify",
        description="Convert a Hugging Face safetensors model (qwen2, llama, qwen3) or a "
        "peft LoRA adapter to GGUF, quantize it with llama.cpp, and check it against "
        "transformers.",
    )
    cmds = group.add_subparsers(dest="convert_command", metavar="SUBCOMMAND")

    g = cmds.add_parser(
        "gguf",
        help="write a GGUF file from a Hugging Face model directory",
        description="Write a GGUF file (weights, hyper-parameters, tokenizer, chat "
        "template) from a Hugging Face model directory with safetensors weights.",
    )
    g.add_argument("model_dir", metavar="HF_DIR", type=Path, help="model directory")
    g.add_argument("--out", "-o", type=Path,
                   help="output file (default: HF_DIR/<name>.<TYPE>.gguf)")
    g.add_argument("--outtype", choices=("f32", "f16", "bf16", "q8_0"), default="f16",
                   help="weight type for matrices (default f16; norms stay f32)")
    g.add_argument("--name", help="model name stored in the file (default: directory name)")
    g.add_argument("--tokenizer-pre", metavar="NAME",
                   help="llama.cpp pre-tokenizer name, when auto-detection fails "
                   "(gpt-2, smollm, qwen2, llama-bpe)")
    g.set_defaults(handler=_cmd_gguf)

    lo = cmds.add_parser(
        "lora",
        help="write a llama.cpp LoRA GGUF from a peft adapter directory",
        description="Write a llama.cpp LoRA adapter GGUF from a peft LoRA adapter directory "
        "(adapter_config.json + adapter_model.safetensors, as `edgeagent distill train` "
        "writes it). --base is the model it was trained on, as a Hugging Face directory "
        "or a GGUF file (for the architecture, tensor names and shapes). Apply it with "
        "`edgeagent ask --lora FILE`.",
    )
    lo.add_argument("adapter_dir", metavar="ADAPTER_DIR", type=Path, help="adapter directory")
    lo.add_argument("--base", required=True, type=Path, metavar="HF_DIR|GGUF",
                    help="the base model: its Hugging Face directory or its GGUF file")
    lo.add_argument("--out", "-o", type=Path,
                    help="output file (default: ADAPTER_DIR/<name>.lora.<TYPE>.gguf)")
    lo.add_argument("--outtype", choices=("f32", "f16"), default="f16",
                    help="tensor type (default f16)")
    lo.add_argument("--name", help="adapter name stored in the file (default: directory name)")
    lo.set_defaults(handler=_cmd_lora)

    q = cmds.add_parser(
        "quantize",
        help="quantize a GGUF file with llama.cpp",
        description="Quantize a GGUF file (usually F16) with llama.cpp.",
    )
    q.add_argument("src", metavar="IN_GGUF", type=Path, help="input GGUF file")
    q.add_argument("--type", "-t", dest="qtype", default="Q4_K_M", metavar="TYPE",
                   help=f"target type (default Q4_K_M): {_QUANT_HELP}")
    q.add_argument("--out", "-o", type=Path, help="output file (default: <in>.<TYPE>.gguf)")
    q.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    q.add_argument("--allow-requantize", action="store_true",
                   help="accept an already-quantized input (loses quality)")
    q.set_defaults(handler=_cmd_quantize)

    v = cmds.add_parser(
        "verify",
        help="compare a GGUF file with its Hugging Face model",
        description="Run the same prompts through transformers and llama.cpp: token ids "
        "must be identical; prints top-1 agreement and max |Δlogit|. Exits non-zero when "
        "tokenisation differs, or when an F32/F16/BF16 file disagrees beyond tolerance.",
    )
    v.add_argument("model_dir", metavar="HF_DIR", type=Path, help="model directory")
    v.add_argument("gguf", metavar="GGUF", type=Path, help="GGUF file to check")
    v.add_argument("--prompt", "-p", action="append", dest="prompts", metavar="TEXT",
                   help="prompt to compare (repeatable; default: a built-in set)")
    v.add_argument("--tolerance", type=float,
                   help="max |Δlogit| relative to max(1, max |logit|) "
                   "(default F32 1e-3, F16 1e-2, BF16 3e-2; quantized: report only)")
    v.add_argument("--threads", type=int, help="llama.cpp threads")
    v.set_defaults(handler=_cmd_verify)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _cmd_gguf(args: argparse.Namespace) -> int:
    from converters.hf_gguf import convert_to_gguf

    out = args.out
    if out is None:
        out = args.model_dir / f"{args.model_dir.resolve().name}.{args.outtype.upper()}.gguf"
    with progress_callback("converting", unit="bytes") as update:
        result = convert_to_gguf(
            args.model_dir, out, outtype=args.outtype, name=args.name,
            tokenizer_pre=args.tokenizer_pre, progress=update,
        )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {result.path} ({result.arch}, {result.outtype}, {result.n_tensors} tensors: "
        f"{_counts(result.type_counts)}; {_size(result.n_bytes)}) in {result.seconds:.1f} s"
    )
    return 0


def _cmd_lora(args: argparse.Namespace) -> int:
    from converters.lora_gguf import convert_lora_to_gguf

    out = args.out
    if out is None:
        name = args.adapter_dir.resolve().name
        out = args.adapter_dir / f"{name}.lora.{args.outtype.upper()}.gguf"
    with progress_callback("converting", unit="bytes") as update:
        result = convert_lora_to_gguf(
            args.adapter_dir, args.base, out, outtype=args.outtype, name=args.name,
            progress=update,
        )
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {result.path} ({result.arch} LoRA, r {result.rank}, alpha {result.alpha:g}, "
        f"{result.outtype}, {result.n_pairs} adapted matrices; {_size(result.n_bytes)}) "
        f"in {result.seconds:.1f} s"
    )
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    from converters.quantize import quantize_gguf

    with progress_callback(f"quantizing to {args.qtype.upper()}") as update:
        result = quantize_gguf(
            args.src, args.qtype, out=args.out, threads=args.threads,
            allow_requantize=args.allow_requantize, progress=update,
        )
    fallback = (
        f"; {result.n_fallback} tensor(s) fell back to another type "
        "(rows not a multiple of the block size)" if result.n_fallback else ""
    )
    print(
        f"wrote {result.path} ({result.qtype}, {_size(result.n_bytes)}; "
        f"{_counts(result.type_counts)}{fallback}) in {result.seconds:.1f} s"
    )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from converters.verify import DEFAULT_PROMPTS, format_report, verify_gguf

    prompts = tuple(args.prompts) if args.prompts else DEFAULT_PROMPTS
    report = verify_gguf(args.model_dir, args.gguf, prompts=prompts, tolerance=args.tolerance,
                         threads=args.threads)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.gguf.name} ({report.weight_type}) vs transformers")
    for col in ("prompt", "tokens", "token ids", "top-1", "next", "max|Δlogit|", "max|logit|"):
        table.add_column(col, justify="left" if col in ("prompt", "token ids") else "right",
                         no_wrap=True, overflow="ellipsis")
    for row in format_report(report):
        table.add_row(*row)
    Console(width=max(100, Console().width)).print(table)
    if report.ok:
        scope = (
            f"within tolerance {report.tolerance:g}" if report.tolerance is not None
            else "tokenisation identical; quantized weights, logits reported only"
        )
        print(f"ok: {scope}")
        return 0
    raise UserError(
        f"{args.gguf} disagrees with {args.model_dir} (max |Δlogit| "
        f"{report.max_abs_diff:.3g}; see the table)",
        exit_code=1,
    )
