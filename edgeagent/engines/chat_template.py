"""Render a chat with the Jinja chat template stored in a GGUF file.

Templates run in Jinja's immutable sandbox with the helpers Hugging Face
templates expect (`raise_exception`, `strftime_now`, `bos_token`,
`eos_token`). A model without a template falls back to ChatML, the format of
SmolLM2 and Qwen2.5.

Not covered: tool-call schemas in templates, multimodal content parts.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from edgeagent.engines.base import Message
from edgeagent.errors import UserError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _raise(message: str) -> None:
    raise UserError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def render_chat(
    template: str | None,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    prefix: str | None = None,
) -> str:
    """The prompt text for `messages`, ending where the assistant speaks next.

    With `prefix`, the assistant turn is opened and `prefix` written into it,
    so the model continues that text (assistant prefill).
    """
    if not messages:
        raise UserError("no messages to send to the model")
    try:
        compiled = _compile(template or CHATML)
        text: str = compiled.render(
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except UserError:
        raise
    except Exception as exc:  # a broken template in a model file
        raise UserError(f"the model's chat template failed: {exc}") from None
    if prefix:
        text += prefix
    return text


def template_from_gguf(path: str) -> str | None:
    """The chat template stored in a GGUF file's header (no model is loaded)."""
    import gguf

    try:
        field = gguf.GGUFReader(path, "r").fields.get("tokenizer.chat_template")
    except Exception as exc:
        raise UserError(f"cannot read the chat template from {path}: {exc}") from None
    if field is None:
        return None
    value = field.contents()
    return str(value) if value else None


def text_before(text: str, before: str | None) -> str:
    """`text` up to where `before` first occurs (all of it when `before` is None): the
    fixed start a `keep_prefix` call keeps."""
    if before is None:
        return text
    cut = text.find(before)
    if cut < 0:
        raise UserError("keep_prefix: the prompt does not contain the cut text")
    return text[:cut]
