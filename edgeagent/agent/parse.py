"""Parse one model action: `Thought: …\\nCode:\\n```py\\n…\\n```<end_code>`.

Covers what a small model gets wrong: `py`, `python` or no language tag,
several code blocks (joined, as the reference agent does), text after the
block, a missing closing fence (the rest is taken when it compiles), a missing
`Thought:` label, and a bare snippet with no fence at all (taken when it is
valid Python, as the reference does). Anything else is a `ParsedAction` with
`error` set: the loop shows it to the model as an error turn; it never raises.

Also `assistant_turn`: the text stored in the chat for training, ending with
```` ```<end_code> ```` although generation stopped on `<end_code>`.

Not covered: running the code (the sandbox) or judging it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

STOP_SEQUENCES: tuple[str, ...] = ("<end_code>", "Observation:", "Calling tools:")
END_CODE = "<end_code>"

_BLOCK = re.compile(r"```(?:py|python|python3|Python)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)
_OPEN = re.compile(r"```(?:py|python|python3|Python)?[ \t]*\n", re.DOTALL)
_PATTERN_SHOWN = r"```(?:py|python)?\n(.*?)\n```"  # the pattern the reference's message names
# a reasoning model's (qwen3) thinking: never code to run; unclosed when cut off mid-thought
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ParsedAction:
    thought: str
    code: str | None
    error: str | None = None


def _compiles(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _thought(text: str, end: int) -> str:
    head = text[:end]
    cut = head.rfind("Code:")
    if cut >= 0:
        head = head[:cut]
    head = head.strip()
    if head.startswith("Thought:"):
        head = head[len("Thought:"):].strip()
    return head


def _parse_error(text: str) -> str:
    """The reference agent's parse error text, so students read what they were trained on."""
    if "final" in text and "answer" in text:
        hint = (
            "It seems like you're trying to return the final answer, you can do it as follows:\n"
            'Code:\n```py\nfinal_answer("YOUR FINAL ANSWER HERE")\n```<end_code>'
        )
    else:
        hint = (
            "Make sure to include code with the correct pattern, for instance:\n"
            "Thoughts: Your thoughts\nCode:\n```py\n# Your python code here\n```<end_code>"
        )
    inner = (
        f"Your code snippet is invalid, because the regex pattern {_PATTERN_SHOWN} was not "
        f"found in it.\nHere is your code snippet:\n{text}\n{hint}"
    )
    return f"Error in code parsing:\n{inner}\nMake sure to provide correct code blobs."


def parse_action(text: str) -> ParsedAction:
    """Thought and code of one model output (`text` is cut at a stop sequence); `<think>`
    blocks are dropped first."""
    text = text.replace(END_CODE, "")
    if "<think>" in text:
        text = _THINK.sub("", text).lstrip()
    blocks = list(_BLOCK.finditer(text))
    if blocks:
        code = "\n\n".join(m.group(1).strip() for m in blocks)
        # an unclosed fence after the last closed block still holds code
        tail = text[blocks[-1].end():]
        opened = _OPEN.search(tail)
        if opened is not None:
            rest = tail[opened.end():].rstrip().removesuffix("`").rstrip("`").strip()
            if rest and _compiles(rest):
                code = f"{code}\n\n{rest}"
        return ParsedAction(_thought(text, blocks[0].start()), code or None,
                            None if code.strip() else _parse_error(text))
    opened = _OPEN.search(text)
    if opened is not None:  # unclosed fence: generation stopped before ```
        rest = text[opened.end():].rstrip().rstrip("`").strip()
        if rest and _compiles(rest):
            return ParsedAction(_thought(text, opened.start()), rest)
        return ParsedAction(_thought(text, opened.start()), None, _parse_error(text))
    bare = text.strip()
    if bare and not bare.startswith("Thought:") and _compiles(bare):
        return ParsedAction("", bare)
    return ParsedAction(_thought(text, len(text)), None, _parse_error(text))


def assistant_turn(text: str) -> str:
    """The assistant message stored in the chat: stripped, and ```` ``` ```` completed
    with `<end_code>` (the reference nudges later steps to stop cleanly this way)."""
    turn = text.strip()
    if turn.endswith("```"):
        turn += END_CODE
    return turn
