"""First-thought prefix (FTP): the teacher's chain-of-thought opening as the agent's first Thought.

The paper's method (Kang et al., 2025; `first_thought_prefix/build_prefix_memory.py`
of the reference code): ask the teacher for a chain-of-thought answer with the
CoT prompt (system turn = the prompt, user turn = the bare question, greedy),
take the first paragraph of the reply, and prefill the agent's first step with

    "Thought: " + reply.split("\\n\\n")[0] + "\\n\\n"

so the teacher continues that thought as an agent (assistant prefill, first
step only). The trajectory records the prefix in `ftp_prefix`.

Differences from the reference, each for a reply it would mangle: leading
blank lines are skipped, an `<answer>` tag inside the first paragraph is cut
off (with what follows), a leading `Thought:` is not doubled, and an empty
paragraph gives no prefix (None) rather than `"Thought: \\n\\n"`. The request
stops at the first blank line, so the teacher writes only the paragraph used.

The prompt is data, shared with the eval harness's CoT mode:
`[cot].system` of `edgeagent/prompts/cot.toml` (the reference's
`teacher_model.yaml` `system_prompt`, verbatim).

Not covered: CoT-distillation datasets (trainer.render), sampling several CoTs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from edgeagent.engines.base import Engine, Message

PROMPT_FILES = ("cot.toml",)
PARAGRAPH = "\n\n"


@dataclass(frozen=True)
class CotPrompt:
    """The chain-of-thought system prompt and the file it came from."""

    system: str
    version: str
    source: str


def _system_of(data: dict[str, Any]) -> str | None:
    for table in (data.get("cot"), data):
        if isinstance(table, dict):
            for key in ("system", "system_prompt"):
                if isinstance(table.get(key), str) and table[key].strip():
                    return str(table[key])
    return None


@lru_cache(maxsize=1)
def load_cot_prompt() -> CotPrompt:
    """The CoT system prompt from `edgeagent/prompts/cot.toml`."""
    folder = resources.files("edgeagent").joinpath("prompts")
    for name in PROMPT_FILES:
        path = folder.joinpath(name)
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        system = _system_of(data)
        if system is not None:
            version = str(data.get("prompt_version") or data.get("version") or name)
            return CotPrompt(system=system, version=version, source=name)
    raise RuntimeError("no chain-of-thought prompt: edgeagent/prompts/cot.toml lacks [cot].system")


def cot_messages(question: str, prompt: CotPrompt | None = None) -> list[Message]:
    """The reference's CoT chat: the prompt as system turn, the bare question as user turn."""
    prompt = prompt or load_cot_prompt()
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": question}]


def first_paragraph(reply: str) -> str:
    """The reply's first non-empty paragraph, without an `<answer>` tag or a `Thought:` label."""
    text = reply.strip().split(PARAGRAPH, 1)[0]
    cut = text.find("<answer>")
    if cut >= 0:
        text = text[:cut]
    text = text.strip()
    if text.startswith("Thought:"):
        text = text[len("Thought:"):].strip()
    return text


def prefix_from_reply(reply: str) -> str | None:
    """`Thought: <first paragraph>\\n\\n`, or None when the reply has no usable paragraph."""
    paragraph = first_paragraph(reply)
    return f"Thought: {paragraph}{PARAGRAPH}" if paragraph else None


def first_thought_prefix(
    engine: Engine, question: str, *, max_tokens: int = 1024, prompt: CotPrompt | None = None
) -> str | None:
    """Ask `engine` (greedy) for the CoT answer's first paragraph; return the agent prefix."""
    chat = cot_messages(question, prompt)
    reply = engine.generate(chat, n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens,
                            stop=[PARAGRAPH])[0].text
    if not reply.strip():  # the reply opened with a blank line: ask again without the stop
        reply = engine.generate(chat, n=1, temperature=0.0, top_p=1.0,
                                max_tokens=max_tokens)[0].text
    return prefix_from_reply(reply)
