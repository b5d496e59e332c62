r"""Pull the answer out of a model's output or a dataset's gold field.

- `last_boxed(text)`: the content of the last `\boxed{…}` (or `\fbox{…}`),
  braces nested to any depth; also `\boxed 5`. None when there is none.
- `gsm8k_gold(text)`: the number after GSM8K's final `#### ` (commas removed).
- `math_answer(text)`: what a math prediction means: the last boxed content if
  any, else the text after `####`, else the whole text (stripped, `$…$` removed).

Not covered: answers hidden in prose without a box ("so the total is 18") —
the agent returns `final_answer(x)`, and the paper scores the boxed value.
"""

from __future__ import annotations

import re

_BOX_CMDS = ("\\boxed", "\\fbox")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at `text[start] == "{"`, and its end."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` in `text` (nested braces kept)."""
    text = str(text)
    best: tuple[int, str] | None = None
    for cmd in _BOX_CMDS:
        pos = text.rfind(cmd)
        while pos >= 0:
            after = pos + len(cmd)
            rest = text[after:]
            stripped = rest.lstrip()
            content: str | None = None
            if stripped.startswith("{"):
                got = _braced(text, after + len(rest) - len(stripped))
                if got is not None:
                    content = got[0]
            elif rest[:1] == " ":  # \boxed 5
                m = re.match(r"\s+([^\s$]+)", rest)
                content = m.group(1) if m else None
            if content is not None:
                if best is None or pos > best[0]:
                    best = (pos, content.strip())
                break
            pos = text.rfind(cmd, 0, pos)
    return None if best is None else best[1]


def gsm8k_gold(text: str) -> str | None:
    """The final answer of a GSM8K solution (`… #### 1,234` -> `1234`)."""
    text = str(text)
    if "####" not in text:
        return None
    tail = text.rsplit("####", 1)[1].strip()
    return tail.replace(",", "").strip() or None


def strip_math_delimiters(text: str) -> str:
    text = str(text).strip()
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            return text[len(left):-len(right)].strip()
    return text


def math_answer(text: object) -> str:
    """The answer a math prediction or gold field states (see module docstring)."""
    if text is None:
        return ""
    if isinstance(text, bool):
        return str(text)
    if isinstance(text, (int, float)):
        return repr(text) if isinstance(text, float) else str(text)
    s = str(text)
    boxed = last_boxed(s)
    if boxed is not None:
        return boxed
    gold = gsm8k_gold(s)
    if gold is not None:
        return gold
    return strip_math_delimiters(s)
