"""`edgeagent serve`: the agent as an OpenAI-compatible server (FastAPI + uvicorn).

Safe by default: binds 127.0.0.1; any other address needs `--api-key` (or
`EDGEAGENT_API_KEY`), or an explicit `--insecure-no-key`; CORS admits
localhost origins unless `--cors-origin` is given. A busy port, a bad model or
an unknown wiki is a one-line error before the server starts. Heavy imports
happen in the handler. Not covered: TLS (put a reverse proxy in front).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from typing import Any

MAX_VOTES = 8  # votes a request may ask for (KV sequences per slot)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve the agent over the OpenAI chat API (http://127.0.0.1:8080/v1)",
        description="Serve the agent (search + code + votes) over the OpenAI chat completions "
        "API. Models offered: NAME (the agent) and NAME:chat (the plain model, no tools).",
    )
    p.add_argument("--model", default=None, help="model name from the registry, or a GGUF path")
    p.add_argument("--wiki", default=None, metavar="NAME",
                   help="wiki index for web_search (default: starter, built on first use)")
    p.add_argument("--no-wiki", action="store_true", help="no web_search index")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; others need --api-key)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--api-key", default=os.environ.get("EDGEAGENT_API_KEY"), metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: $EDGEAGENT_API_KEY)")
    p.add_argument("--insecure-no-key", action="store_true",
                   help="allow a non-loopback bind without an API key (anyone can run code)")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="requests run at once (default 1)")
    p.add_argument("--queue", type=int, default=8, metavar="N",
                   help="requests waiting beyond --parallel before 503 (default 8)")
    p.add_argument("--engines", choices=("shared", "per-slot", "batched"), default="batched",
                   help="how parallel requests share the model: decoded together in one "
                   "batch (default), taking turns on one engine, or one engine per slot")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow this browser origin (repeatable; default: localhost only)")
    p.add_argument("--reasoning-field", choices=("reasoning_content", "reasoning"),
                   default="reasoning_content",
                   help="delta field for the steps (reasoning for vLLM/OpenRouter clients)")
    p.add_argument("--max-steps", type=int, default=5, metavar="K",
                   help="default agent steps per request (default 5)")
    p.add_argument("--max-tokens", type=int, default=512,
                   help="default tokens per step (default 512)")
    p.add_argument("--n-ctx", type=int, default=8192, help="context size (default 8192)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--lora", default=None, metavar="FILE", help="LoRA adapter GGUF to apply")
    p.add_argument("--lora-scale", type=float, default=1.0, metavar="X")
    p.add_argument("--no-switch", action="store_true",
                   help="offer only the loaded model (default: every registered model too, "
                   "loaded on request in place of the loaded one)")
    p.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(handler=handle)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> None:
    from edgeagent.errors import UserError

    if args.parallel < 1:
        raise UserError("--parallel must be at least 1")
    if args.engines == "batched" and args.parallel * MAX_VOTES > 256:
        raise UserError(f"--parallel {args.parallel} is too many for --engines batched (at most "
                        f"{256 // MAX_VOTES}: llama.cpp holds 256 sequences)")
    if args.queue < 0:
        raise UserError("--queue must be 0 or more")
    if args.max_steps < 1 or args.max_tokens < 1:
        raise UserError("--max-steps and --max-tokens must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a port number")
    if not is_loopback(args.host) and not args.api_key and not args.insecure_no_key:
        raise UserError(
            f"binding {args.host} lets other machines run code here: pass --api-key KEY "
            "(or set EDGEAGENT_API_KEY), or --insecure-no-key if you mean it")


def _check_port(host: str, port: int) -> None:
    from edgeagent.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def handle(args: argparse.Namespace) -> int:
    check_args(args)
    _check_port(args.host, args.port)
    import uvicorn

    from edgeagent.models.registry import model_label, resolve, resolve_model
    from edgeagent.serve.app import create_app
    from edgeagent.serve.hosts import EngineHost
    from edgeagent.serve.jobs import AgentDefaults
    from edgeagent.serve.load import open_host
    from edgeagent.serve.offered import OfferedModels
    from edgeagent.serve.service import ServeSettings, Service, open_wiki

    wiki = None if args.no_wiki else (args.wiki or "starter")
    if wiki:
        open_wiki(wiki)  # fails now, in one line, rather than on the first request
    path = resolve_model(args.model)
    name = model_label(args.model, path)

    def load(model: str) -> EngineHost:
        if model == name:
            where, lora = path, args.lora
        else:
            where, adapter = resolve(model, fetch_default=False)
            lora = str(adapter) if adapter else None
        return open_host(where, name=model, kind=args.engines, parallel=args.parallel,
                         n_ctx=args.n_ctx, threads=args.threads, max_votes=MAX_VOTES, lora=lora,
                         lora_scale=args.lora_scale)

    host = OfferedModels(load(name), None if args.no_switch else load)
    settings = ServeSettings(
        api_key=args.api_key or None, parallel=args.parallel, max_queue=args.queue,
        reasoning_field=args.reasoning_field, max_votes=MAX_VOTES,
        cors_origins=list(args.cors_origin), wiki=wiki,
        defaults=AgentDefaults(max_steps=args.max_steps, max_tokens=args.max_tokens),
    )
    app = create_app(Service(host, settings))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    others = len(host.names()) - 1
    print(f"edgeagent serve: {name} (agent) and {name}:chat at http://{shown}:{args.port}/v1 "
          f"{f'(+{others} registered, loaded on request) ' if others else ''}"
          f"· {args.parallel} parallel ({args.engines}) · wiki {wiki or 'none'}"
          f"{' · API key required' if settings.api_key else ''}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level=args.log_level,
                    timeout_graceful_shutdown=3)
    finally:
        host.close()
    return 0
