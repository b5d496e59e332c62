"""`edgeagent ask "question"`: one task through the agent, the answer on stdout.

With stdout on a terminal the steps stream live (rich); otherwise only the
answer is printed; `--json` prints the whole trajectory record instead. No
answer: a one-line error and exit 1. Ctrl+C: exit 130. Heavy imports (the
engine, the index) happen in the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgeagent.cli.options import add_straggler
from edgeagent.wiki.retrieval import RETRIEVAL_PROFILES


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ask", help="ask the agent one question (answer on stdout)",
        description="Ask the agent one question; it searches the local Wikipedia and runs "
        "Python, then prints the answer.",
    )
    p.add_argument("question", help="the question or task")
    p.add_argument("--model", default=None, help="model name from the registry, or a GGUF path")
    p.add_argument("--wiki", default=None, metavar="NAME",
                   help="wiki index to search (default: starter, built on first use)")
    p.add_argument("--no-wiki", action="store_true", help="no web_search index")
    p.add_argument("--retrieval", default=None, choices=tuple(RETRIEVAL_PROFILES),
                   help="retrieval profile (default: the one the index was built with)")
    p.add_argument("--votes", type=int, default=1, metavar="N",
                   help="self-consistent action generation: N candidates per step (paper: 8)")
    add_straggler(p)
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default: 0 with 1 vote, 0.4 with more)")
    p.add_argument("--top-p", type=float, default=None, help="default: 1.0 / 0.8 with votes")
    p.add_argument("--max-steps", type=int, default=5, metavar="K", help="default 5")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens per action (default 512)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--prompt", choices=("student", "teacher"), default="student",
                   help="system prompt: the short student one (default) or the teacher's")
    p.add_argument("--n-ctx", type=int, default=8192, help="context size (default 8192)")
    p.add_argument("--lora", default=None, metavar="FILE",
                   help="LoRA adapter GGUF to apply (from `edgeagent convert lora`)")
    p.add_argument("--lora-scale", type=float, default=None, metavar="X",
                   help="LoRA strength (default 1.0)")
    p.add_argument("--json", action="store_true", help="print the whole trajectory as JSON")
    p.set_defaults(handler=handle)


def _search(args: argparse.Namespace) -> Any:
    if args.no_wiki:
        return None
    from edgeagent.wiki.starter import open_search

    return open_search(args.wiki, retrieval=args.retrieval)


def handle(args: argparse.Namespace) -> int:
    from edgeagent.errors import UserError

    if args.votes < 1:
        raise UserError("--votes must be at least 1")
    if args.max_steps < 1:
        raise UserError("--max-steps must be at least 1")
    if not args.question.strip():
        raise UserError("the question is empty")
    if args.lora_scale is not None and args.lora is None and args.model is None:
        raise UserError("--lora-scale needs --lora FILE (or a model pulled with its adapter)")
    from edgeagent.agent.loop import Agent, AgentConfig
    from edgeagent.engines.llamacpp import LlamaCppEngine
    from edgeagent.models.registry import model_label, resolve

    path, registered_lora = resolve(args.model)  # a pulled adapter model brings its LoRA
    lora = args.lora or registered_lora
    if args.lora_scale is not None and lora is None:
        raise UserError("--lora-scale needs --lora FILE (or a model pulled with its adapter)")
    search = _search(args)
    live = sys.stdout.isatty() and not args.json
    on_event = None
    if live:
        from rich.console import Console

        from edgeagent.agent.display import RichPrinter

        on_event = RichPrinter(Console())
    config = AgentConfig(
        votes=args.votes, temperature=args.temperature, top_p=args.top_p,
        max_steps=args.max_steps, max_tokens=args.max_tokens, seed=args.seed, prompt=args.prompt,
        straggler=args.straggler,
    )
    lora_scale = 1.0 if args.lora_scale is None else args.lora_scale
    with LlamaCppEngine(path, n_ctx=args.n_ctx, max_parallel=max(8, args.votes),
                        lora=lora, lora_scale=lora_scale) as engine:
        label = model_label(args.model, path)
        model_name = label if lora is None or lora == registered_lora else \
            f"{label}+{Path(lora).name}"
        agent = Agent(engine, search=search, config=config, on_event=on_event,
                      model_name=model_name)
        traj = agent.run(args.question)
    if args.json:
        sys.stdout.write(traj.to_json() + "\n")
        return 0 if traj.answer is not None else 1
    if traj.answer is None:
        reason = traj.error or "the agent gave no answer"
        print(f"edgeagent: error: {reason}", file=sys.stderr)
        return 1
    if live:
        from rich.console import Console

        Console().print(f"[bold green]Answer:[/] {traj.answer}", highlight=False)
    else:
        print(traj.answer)
    return 0
