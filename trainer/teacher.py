"""The teacher engine of `distill generate`: which kind, how to reach it, and a watch on it.

    kind = teacher_kind("http://gpu:8000")              # "url", "gguf" or "gold"
    factory, workers = make_factory(kind, "http://gpu:8000", workers=8)
    served = preflight(factory(), "http://gpu:8000")    # fails fast on a dead teacher

An OpenAI-compatible URL becomes one `OpenAIEngine` per worker; a GGUF file one
`LlamaCppEngine` (one worker). With `--ftp` the engine needs the teacher's chat
template to prefill a first thought through `/completions`: from a GGUF header,
a `tokenizer_config.json`, a Jinja file, or a llama.cpp server's `/props`.
`Watched` remembers whether the engine gave up on its server (exit code 3), so
`generate` stops the run instead of writing failed records.

Not covered: running the agent (`trainer.generate`), the gold teacher (`trainer.gold`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeagent.engines.base import Completion, Engine, Message, TokenCallback
from edgeagent.errors import UserError

UNREACHABLE = 3  # UserError.exit_code of an engine that gave up after its retries


def teacher_kind(teacher: str) -> str:
    """"url", "gguf" or "gold" (a `UserError` for anything else)."""
    if teacher == "gold":
        return "gold"
    if teacher.startswith(("http://", "https://")):
        return "url"
    path = Path(teacher).expanduser()
    if path.suffix.lower() == ".gguf" or path.is_file():
        if not path.is_file():
            raise UserError(f"no such GGUF file: {teacher}")
        return "gguf"
    raise UserError(f"--teacher must be an http(s) URL, a .gguf file or `gold`: {teacher}")


def read_chat_template(source: str) -> str:
    """A Jinja chat template from a GGUF header, a `tokenizer_config.json`, or a text file."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"no such chat template file: {source}")
    if path.suffix.lower() == ".gguf":
        from edgeagent.engines.chat_template import template_from_gguf

        template = template_from_gguf(str(path))
        if not template:
            raise UserError(f"{path} stores no chat template")
        return template
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read chat template {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text).get("chat_template")
        except (json.JSONDecodeError, AttributeError):
            value = None
        if not isinstance(value, str) or not value:
            raise UserError(f"{path} has no `chat_template` string")
        return value
    return text


def server_chat_template(url: str) -> str | None:
    """The template a llama.cpp server reports at `/props` (None for other servers)."""
    import httpx

    base = url.rstrip("/")
    base = base[: -len("/v1")] if base.endswith("/v1") else base
    try:
        resp = httpx.get(f"{base}/props", timeout=5.0)
        value = resp.json().get("chat_template") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


class Watched:
    """The teacher engine, remembering whether it gave up on the server (exit code 3)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.down: UserError | None = None

    def generate(self, messages: Sequence[Message] | str, **kwargs: Any) -> list[Completion]:
        on_token: TokenCallback | None = kwargs.pop("on_token", None)
        del on_token  # nobody watches the tokens; without it HTTP engines need no stream
        try:
            return self.engine.generate(messages, **kwargs)
        except UserError as exc:
            if exc.exit_code == UNREACHABLE:
                self.down = exc
            raise

    def cancel(self) -> None:
        stop = getattr(self.engine, "cancel", None)
        if callable(stop):
            stop()

    def close(self) -> None:
        self.engine.close()



def make_factory(
    kind: str, teacher: str, *, workers: int = 1, n_ctx: int = 8192,
    model_name: str | None = None, chat_template: str | None = None, ftp: bool = False,
    retries: int = 4,
) -> tuple[Callable[[], Engine], int]:
    """An engine maker for a `url` or `gguf` teacher and how many workers it allows."""
    if kind == "gguf":
        from edgeagent.engines.llamacpp import LlamaCppEngine

        if workers > 1:
            print("edgeagent: a GGUF teacher runs one question at a time; --workers ignored",
                  file=sys.stderr)
        return (lambda: LlamaCppEngine(Path(teacher).expanduser(), n_ctx=n_ctx,
                                       max_parallel=1)), 1
    from edgeagent.engines.openai_http import OpenAIEngine

    template = read_chat_template(chat_template) if chat_template else None
    if ftp and template is None:
        template = server_chat_template(teacher)
        if template is None:
            print("edgeagent: --ftp without --chat-template: the prefix goes out as a trailing "
                  "assistant message with continue_final_message (vLLM); for llama.cpp or "
                  "llama-cpp-python servers pass --chat-template MODEL.gguf", file=sys.stderr)
    return (lambda: OpenAIEngine(teacher, model=model_name, chat_template=template,
                                 retries=retries)), workers


def preflight(engine: Engine, teacher: str) -> str:
    """One tiny request, so a dead or misconfigured teacher fails before any record."""
    try:
        engine.generate([{"role": "user", "content": "Say OK."}], max_tokens=1)
    except UserError as exc:
        raise UserError(f"teacher {teacher} is not usable: {exc}", exit_code=exc.exit_code
                        ) from None
    return str(getattr(engine, "model", None) or engine.name)
