"""The agent's prompts, loaded from `edgeagent/prompts/code_agent.toml`.

Covers: the student (short) and teacher (long) system prompts with the tool
list rendered in, the task turn (`New task:\\n` + question + the paper's
instruction suffix), and the fallback chat that asks for an answer from the
agent's memory after the last step. The text is the reference implementation's
(Kang et al., 2025), so released students and trajectories work unchanged;
`prompt_version` names it in every trajectory record.

Not covered: chat templates (the engine renders messages), planning prompts.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace
from typing import Any, Literal

from edgeagent.engines.base import Message

PromptKind = Literal["student", "teacher"]
DEFAULT_FILE = "code_agent.toml"


def _render(template: str, **variables: Any) -> str:
    """Jinja with smolagents' `populate_template` settings (StrictUndefined, no trimming)."""
    import jinja2

    return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(**variables)


def _authorized_imports() -> list[str]:
    """The modules the sandbox allows; the teacher prompt lists them."""
    from edgeagent.tools.sandbox.modules import ALLOWED_MODULES

    return sorted(ALLOWED_MODULES)


def merge_roles(messages: Sequence[Message]) -> list[Message]:
    """Join consecutive messages of one role by plain concatenation, as the reference's
    `get_clean_message_list(flatten_messages_as_text=True)` does before every model call."""
    out: list[Message] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


@dataclass(frozen=True)
class Prompts:
    """One prompt file, parsed."""

    version: str
    systems: dict[str, str]
    task_prefix: str
    task_suffix: str
    fallback_pre: str
    fallback_post: str
    tools: dict[str, dict[str, Any]]

    def system(self, kind: PromptKind = "student") -> str:
        """The system prompt with the tools (web_search, final_answer) rendered in."""
        if kind not in self.systems:
            raise ValueError(f"unknown prompt kind {kind!r}")
        tools = {name: SimpleNamespace(name=name, **spec) for name, spec in self.tools.items()}
        return _render(
            self.systems[kind], tools=tools, managed_agents={},
            authorized_imports=str(_authorized_imports()),
        )

    def task(self, question: str) -> str:
        """The first user turn."""
        return f"{self.task_prefix}{question}{self.task_suffix}"

    def fallback_messages(self, memory: Sequence[Message], question: str) -> list[Message]:
        """The "answer from memory" chat: `memory` is the agent chat after its system turn."""
        chat: list[Message] = [{"role": "system", "content": self.fallback_pre}]
        chat.extend(memory)
        chat.append({"role": "user", "content": _render(self.fallback_post, task=question)})
        return merge_roles(chat)


@lru_cache(maxsize=4)
def load_prompts(name: str = DEFAULT_FILE) -> Prompts:
    """Parse a prompt file shipped in `edgeagent/prompts/`."""
    data = tomllib.loads(resources.files("edgeagent").joinpath("prompts", name).read_text("utf-8"))
    return Prompts(
        version=str(data["prompt_version"]),
        systems={"student": data["student"]["system"], "teacher": data["teacher"]["system"]},
        task_prefix=data["task_prefix"],
        task_suffix=data["task_suffix"],
        fallback_pre=data["fallback"]["pre_messages"],
        fallback_post=data["fallback"]["post_messages"],
        tools=dict(data["tools"]),
    )
