"""`edgeagent distill …`: trajectories to training data to a LoRA student.

    distill generate --teacher URL|GGUF|gold --data FILE --out traj.jsonl [--ftp] [--workers K]
    distill run    CONFIG.toml [--dry-run]   (generate → filter → train → merge → convert)
    distill gold   --data gsm8k_train.jsonl --out traj.jsonl [--limit N]
    distill import RELEASED.jsonl --out traj.jsonl [--dataset NAME]
    distill filter traj.jsonl --out kept.jsonl [--judge URL]
    distill render kept.jsonl --model DIR [--show] [--index I]   (alias: inspect)
    distill train  --model DIR --data kept.jsonl --out lora/ [--epochs …]
    distill merge  --base DIR --adapter lora/ --out merged/

Top-level imports stay light (argparse only; `edgeagent --help` imports this
module): `trainer`, torch, transformers and peft are imported by the handlers.
`gold`, `import` and `filter` need no torch; `render` needs transformers;
`train` and `merge` need the `train` extra; `generate` needs no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeagent.errors import UserError


def register(sub: Any) -> None:
    """Add the `distill` group to the top-level subparsers."""
    group = sub.add_parser(
        "distill",
        help="make training data from trajectories and train a LoRA student",
        description="Build, import and filter agent trajectories, render them as SFT data, "
        "train a LoRA student and merge it.",
    )
    cmds = group.add_subparsers(dest="distill_command", metavar="SUBCOMMAND")
    _register_generate(cmds)

    g = cmds.add_parser(
        "gold", help="trajectories from GSM8K calculator annotations (no teacher needed)",
        description="Turn GSM8K solutions' <<a*b=c>> calculator annotations into "
        "Thought/Code trajectories ending in final_answer, marked model: gold-annotations.")
    g.add_argument("--data", type=Path, required=True, help="GSM8K-format JSONL "
                   "({question, answer ending in '#### N'}) or a benchmark JSON file")
    g.add_argument("--out", "-o", type=Path, required=True, help="trajectory JSONL to write")
    g.add_argument("--limit", type=int, help="only the first N questions")
    g.set_defaults(handler=_cmd_gold)

    i = cmds.add_parser(
        "import", help="import the paper's released trajectories (smolagents log_data)",
        description="Read released trajectory entries (JSONL or a JSON list of "
        "{question, generated_answer, true_answer, log_data}) into our trajectory schema.")
    i.add_argument("src", metavar="FILE", type=Path, help="released trajectories")
    i.add_argument("--out", "-o", type=Path, required=True, help="trajectory JSONL to write")
    i.add_argument("--dataset", help="dataset name to record (decides math vs QA scoring)")
    i.add_argument("--keep-system", action="store_true",
                   help="keep the teacher's system prompt (default: the student's short one)")
    i.set_defaults(handler=_cmd_import)

    f = cmds.add_parser(
        "filter", help="keep correct trajectories without parse errors",
        description="Score each trajectory (math: symbolic equivalence of \\boxed{} answers; "
        "QA: exact match, or an LLM judge) and keep the correct ones without parse errors "
        "or step-limit fallbacks; execution errors stay. Prints counts per drop reason.")
    f.add_argument("src", metavar="IN", type=Path, help="trajectory JSONL")
    f.add_argument("--out", "-o", type=Path, required=True, help="kept trajectories (JSONL)")
    f.add_argument("--judge", metavar="URL",
                   help="OpenAI-compatible endpoint judging factual answers (paper's prompt)")
    f.add_argument("--judge-model", metavar="NAME", help="model name to ask the judge server for")
    f.set_defaults(handler=_cmd_filter)

    r = cmds.add_parser(
        "render", aliases=["inspect"], help="show the SFT tokens: which are trained",
        description="Render trajectories with the student's chat template into token ids "
        "and labels; print counts, or with --show a coloured dump (trained tokens green).")
    r.add_argument("src", metavar="IN", type=Path, help="trajectory JSONL")
    r.add_argument("--model", required=True, help="student model (dir, .gguf, or Hub id)")
    r.add_argument("--max-len", type=int, default=10240, help="token limit (default 10240)")
    r.add_argument("--show", action="store_true", help="print the token dump")
    r.add_argument("--index", type=int, default=0, help="which record to show (default 0)")
    r.add_argument("--no-color", action="store_true",
                   help="mark trained text with ⟦…⟧ instead of colour")
    r.set_defaults(handler=_cmd_render)

    t = cmds.add_parser(
        "train", help="LoRA SFT of a student on trajectories",
        description="LoRA fine-tuning (peft) on the assistant turns of trajectory records. "
        "Defaults are the paper's: r 64, alpha 128, lr 2e-4, 2 epochs, effective batch 8.")
    t.add_argument("--model", required=True, help="base: HF dir, .gguf, or Hub id")
    t.add_argument("--data", type=Path, required=True, help="trajectory JSONL (filtered)")
    t.add_argument("--out", "-o", type=Path, required=True, help="adapter directory")
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--rank", type=int, default=64)
    t.add_argument("--alpha", type=int, default=128)
    t.add_argument("--dropout", type=float, default=0.05)
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--grad-accum", type=int, default=8)
    t.add_argument("--max-len", type=int, default=10240)
    t.add_argument("--limit", type=int, help="only the first N records")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 on a GPU with bf16 or a CPU with AVX512-BF16/AMX "
                   "(autocast), else fp32")
    t.add_argument("--prefix-cache", action="store_true",
                   help="run the prompt prefix all examples share once per step, without "
                   "its gradient (faster on CPU; an approximation)")
    t.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (less memory)")
    t.add_argument("--save-every", type=int, default=50, metavar="STEPS",
                   help="checkpoint every STEPS optimizer steps (0: only on Ctrl-C)")
    t.add_argument("--no-resume", dest="resume", action="store_false",
                   help="ignore a checkpoint in --out and start over")
    t.add_argument("--max-steps", type=int, metavar="N",
                   help="stop after N steps in this run (checkpointed; rerun to go on)")
    t.set_defaults(handler=_cmd_train)

    m = cmds.add_parser(
        "merge", help="merge a LoRA adapter into its base (safetensors)",
        description="Fold the adapter into the base weights and save a plain safetensors "
        "model with tokenizer and chat template, ready for `edgeagent convert gguf`.")
    m.add_argument("--base", required=True, help="base model: HF dir, .gguf, or Hub id")
    which = m.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", type=Path, help="adapter directory")
    which.add_argument("--adapters", metavar="A,B,…",
                       help="several adapters of the same base, combined (see --combine)")
    m.add_argument("--weights", metavar="W,W,…",
                   help="one weight per adapter (default: equal, summing to 1)")
    m.add_argument("--combine", choices=("linear", "ties"), default="linear",
                   help="linear: weighted sum of the weight deltas; ties: trim, elect sign, "
                   "disjoint mean (TIES-merging)")
    m.add_argument("--density", type=float, default=0.5,
                   help="ties: the fraction of each delta's largest entries kept (0.5)")
    m.add_argument("--out", "-o", type=Path, required=True, help="output directory")
    m.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                   help="weight dtype of the merged model (default: the base's)")
    m.set_defaults(handler=_cmd_merge)

    run = cmds.add_parser(
        "run", help="the whole pipeline from one TOML file",
        description="generate → filter → train → merge → convert gguf → quantize, each "
        "stage the edgeagent command itself, outputs in one folder; a stage whose output "
        "exists is skipped (generate resumes). See trainer/run.py for the file format.")
    run.add_argument("config", metavar="CONFIG", type=Path, help="pipeline config (TOML)")
    run.add_argument("--dry-run", action="store_true", help="print the commands only")
    run.set_defaults(handler=_cmd_run)


def _register_generate(cmds: Any) -> None:
    g = cmds.add_parser(
        "generate", help="teacher trajectories: one greedy agent run per question",
        description="Run the agent loop with the long teacher prompt, greedy, once per "
        "question of a benchmark file, and append each trajectory to --out as it finishes "
        "(ids already there are skipped: rerun to resume). --ftp first asks the teacher "
        "for a chain-of-thought answer and prefills the agent's first Thought with its "
        "first paragraph.")
    g.add_argument("--teacher", required=True, metavar="URL|GGUF|gold",
                   help="OpenAI-compatible server URL (vLLM, llama.cpp, hosted), a GGUF file, "
                   "or `gold` (GSM8K calculator annotations, no model)")
    g.add_argument("--data", type=Path, required=True,
                   help="benchmark .json ({metadata, examples}) or .jsonl (GSM8K lines)")
    g.add_argument("--out", "-o", type=Path, required=True,
                   help="trajectory JSONL to append to")
    g.add_argument("--ftp", action="store_true",
                   help="first-thought prefix from the teacher's chain of thought")
    g.add_argument("--workers", type=int, default=1, metavar="K",
                   help="parallel requests to an HTTP teacher (default 1)")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N questions")
    g.add_argument("--model-name", metavar="NAME",
                   help="model to ask the server for and to record (default: the server's)")
    g.add_argument("--chat-template", metavar="GGUF|FILE",
                   help="the teacher's chat template (a GGUF, tokenizer_config.json or "
                   "Jinja file): --ftp then prefills through /completions, which any "
                   "server continues (needed for llama.cpp servers)")
    g.add_argument("--wiki", default=None, metavar="NAME",
                   help="wiki index for web_search (default: starter, built on first use)")
    g.add_argument("--no-wiki", action="store_true", help="no web_search index")
    g.add_argument("--dataset", metavar="NAME",
                   help="dataset name to record (default: from the file name, e.g. gsm8k)")
    g.add_argument("--max-steps", type=int, default=5, help="agent steps (default 5)")
    g.add_argument("--max-tokens", type=int, default=1024,
                   help="tokens per agent step (default 1024)")
    g.add_argument("--cot-max-tokens", type=int, default=1024,
                   help="tokens for the --ftp chain-of-thought paragraph (default 1024)")
    g.add_argument("--fallback", action="store_true",
                   help="after the last step, ask for an answer from memory (filter drops "
                   "such trajectories, so it is off by default)")
    g.add_argument("--retries", type=int, default=4,
                   help="retries of a failed request before giving up (default 4)")
    g.add_argument("--n-ctx", type=int, default=8192, help="context size of a GGUF teacher")
    g.set_defaults(handler=_cmd_generate)


def _need_train_extra() -> None:
    from trainer import require_train_extra

    require_train_extra()


def _write(out: Path, records: list[Any]) -> None:
    from edgeagent.agent.trajectory import append_records
    from edgeagent.atomic import atomic_output

    with atomic_output(out) as tmp:
        append_records(tmp, records)


def _cmd_gold(args: argparse.Namespace) -> int:
    from edgeagent.eval.data import read_examples
    from trainer.gold import GoldError, gold_trajectory

    examples = read_examples(args.data)
    if args.limit is not None:
        examples = examples[: args.limit]
    if not examples:
        raise UserError(f"{args.data} holds no examples")
    stem = args.data.name.split(".")[0]
    records, skipped = [], []
    for n, ex in enumerate(examples):
        try:
            records.append(gold_trajectory(ex, task_id=str(ex.get("id") or f"{stem}:{n}"),
                                           dataset="gsm8k"))
        except GoldError as exc:
            skipped.append(f"{stem}:{n}: {exc}")
    if not records:
        raise UserError(f"no gold trajectories from {args.data} (first problem: {skipped[0]})")
    _write(args.out, records)
    print(f"wrote {len(records)} gold trajectories to {args.out}; skipped {len(skipped)}")
    for line in skipped[:5]:
        print(f"  skipped {line}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from trainer.importer import import_log_data

    records, empty = import_log_data(args.src, dataset=args.dataset,
                                     keep_system=args.keep_system)
    if not records:
        raise UserError(f"{args.src} holds no trajectories with log_data")
    _write(args.out, records)
    print(f"imported {len(records)} trajectories to {args.out}; "
          f"skipped {empty} entries without log_data")
    return 0


def _cmd_filter(args: argparse.Namespace) -> int:
    from trainer.filter import filter_path

    report = filter_path(args.src, args.out, judge_url=args.judge, judge_model=args.judge_model)
    for line in report.lines():
        print(line)
    print(f"wrote {args.out}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from edgeagent.agent.trajectory import read_records
    from trainer.hf import load_tokenizer
    from trainer.render import render_messages, summary, visualize

    records = read_records(args.src)
    if not records:
        raise UserError(f"{args.src} holds no trajectories")
    tokenizer = load_tokenizer(args.model)
    if args.show:
        if not 0 <= args.index < len(records):
            raise UserError(f"--index must be in 0..{len(records) - 1}")
        rec = records[args.index]
        r = render_messages(tokenizer, rec.messages, max_len=args.max_len, example_id=rec.id)
        print(visualize(tokenizer, r, color=not args.no_color and sys.stdout.isatty()))
        print(f"\n{rec.id}: {len(r.input_ids)} tokens, {r.n_trained} trained"
              + (" (truncated)" if r.truncated else ""))
        return 0
    rendered = [render_messages(tokenizer, rec.messages, max_len=args.max_len, example_id=rec.id)
                for rec in records]
    s = summary(rendered)
    print(f"{s['examples']} examples, {s['tokens']} tokens, {s['trained_tokens']} trained "
          f"({100 * s['trained_tokens'] / max(1, s['tokens']):.1f}%), {s['truncated']} truncated")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    _need_train_extra()
    from trainer.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, data=args.data, out=args.out, epochs=args.epochs,
                      lr=args.lr, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
                      batch_size=args.batch_size, grad_accum=args.grad_accum,
                      max_len=args.max_len, limit=args.limit, seed=args.seed,
                      precision=args.precision, prefix_cache=args.prefix_cache,
                      gradient_checkpointing=args.gradient_checkpointing,
                      save_every=args.save_every, resume=args.resume, max_steps=args.max_steps)

    def on_step(e: dict[str, Any]) -> None:
        eta = e["seconds"] / e["step"] * (e["of"] - e["step"])
        print(f"\rstep {e['step']}/{e['of']}  loss {e['loss']:.4f}  lr {e['lr']:.2e}  "
              f"{e['tokens_per_s']:.0f} tok/s  ETA {_clock(eta)}", end="", file=sys.stderr,
              flush=True)

    result = train(cfg, on_step=on_step)
    print(file=sys.stderr)
    if result.resumed_from:
        print(f"resumed from the checkpoint at step {result.resumed_from}", file=sys.stderr)
    print(f"trained {result.steps} steps on {result.examples} examples: loss "
          f"{result.first_loss:.4f} -> {result.last_loss:.4f}, {result.tokens} tokens "
          f"({result.trained_tokens} trained) in {result.seconds:.1f} s = "
          f"{result.tokens_per_s:.0f} tokens/s; adapter in {args.out}")
    return 0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _cmd_merge(args: argparse.Namespace) -> int:
    _need_train_extra()
    from trainer.merge import merge

    if args.adapters:
        from trainer.merge import merge_adapters

        adapters = [Path(a) for a in args.adapters.split(",") if a.strip()]
        try:
            weights = ([float(w) for w in args.weights.split(",")] if args.weights else None)
        except ValueError:
            raise UserError(f"--weights must be numbers separated by commas: {args.weights}"
                            ) from None
        result = merge_adapters(args.base, adapters, args.out, weights=weights,
                                method=args.combine, density=args.density, dtype=args.dtype)
        print(f"combined {len(adapters)} adapters ({args.combine}) and merged "
              f"{result.parameters:,} parameters ({result.dtype}) into {result.path}")
        return 0
    if args.weights:
        raise UserError("--weights goes with --adapters")
    result = merge(args.base, args.adapter, args.out, dtype=args.dtype)
    print(f"merged {result.parameters:,} parameters ({result.dtype}) into {result.path}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from trainer.generate import GenerateConfig, generate

    cfg = GenerateConfig(
        teacher=args.teacher, data=args.data, out=args.out, ftp=args.ftp, workers=args.workers,
        limit=args.limit, model_name=args.model_name, chat_template=args.chat_template,
        dataset=args.dataset, max_steps=args.max_steps, max_tokens=args.max_tokens,
        cot_max_tokens=args.cot_max_tokens, retries=args.retries, n_ctx=args.n_ctx,
        fallback=args.fallback,
    )

    from edgeagent.wiki.starter import open_search

    report = generate(cfg, open_search=None if args.no_wiki else lambda: open_search(args.wiki))
    for line in report.lines():
        print(line)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from trainer.run import run

    return run(args.config, dry_run=args.dry_run)
