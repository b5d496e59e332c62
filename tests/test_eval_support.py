"""Helpers for the eval tests (no tests here): a fake engine that answers from a table.

`AnswerEngine(answers, mode)` replies to the agent (a `final_answer` code
action) or to the cot/direct prompt (`<answer>` tags); questions not in the
table get a malformed reply (a parse error). `delay` makes it slow (for
interrupting a run); `log` appends every question it is asked to a file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeagent.engines.base import Completion, Message, Timings


class AnswerEngine:
    name = "answer-table"

    def __init__(self, answers: dict[str, str], *, agent: bool = True, delay: float = 0.0,
                 log: Path | None = None) -> None:
        self.answers = answers
        self.agent = agent
        self.delay = delay
        self.log = log
        self.closed = False

    def _question(self, messages: Sequence[Message] | str) -> str:
        assert not isinstance(messages, str)
        text = messages[1]["content"]
        return text.removeprefix("New task:\n").split("\n")[0] if self.agent else text

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1,
                 temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int | None = None, prefix: str | None = None,
                 on_token: Callable[[int, str], None] | None = None) -> list[Completion]:
        question = self._question(messages)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(question) + "\n")
        if self.delay:
            time.sleep(self.delay)
        answer = self.answers.get(question)
        if self.agent:
            text = ("Thought: I know it.\nCode:\n```py\n"
                    f"final_answer({answer!r})\n```" if answer is not None
                    else "Thought: no idea, and no code either.")
        else:
            text = (f"Reasoning.\n<answer> {answer} " if answer is not None
                    else "I am not sure.")
        stop_hit = "</answer>" if (not self.agent and answer is not None) else None
        return [Completion(text, "stop", 100, 20, Timings(total_s=0.01,
                                                          prompt_tokens_evaluated=100),
                           stop=stop_hit) for _ in range(n)]

    def close(self) -> None:
        self.closed = True


def write_bench(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """A benchmark file in the shared format."""
    path.write_text(json.dumps({"metadata": {"name": path.stem}, "examples": rows}), "utf-8")
    return path
