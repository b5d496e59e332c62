r"""A canonical string for a math answer: `normalize_math(text)`.

Strips `$`/`\(…\)` delimiters, `\left`/`\right`, spacing commands, degree
signs, `\%`, `\$`, `\text{}` unit groups beside a value (a whole-answer
`\text{word}` is kept), `x \in` prefixes, trailing words after a number, and
thousands separators. Also `compact(s)` (no spaces, lower case).
Not covered: deciding equality (`math_equiv`).
"""

from __future__ import annotations

import re

from edgeagent.scoring.extract import strip_math_delimiters

_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|operatorname)"
_TEXT_GROUP = re.compile(_TEXT_CMD + r"\s*\{([^{}]*)\}(?:\s*\^\s*\{?\d\}?)?")
_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\quad|\\qquad|\\displaystyle|~")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUM_WITH_WORDS = re.compile(r"(-?[\d.,/]*\d)\s*[a-zA-Z][a-zA-Z ]*")
_IN_PREFIX = re.compile(r"^[a-zA-Z]\s*\\in\s*")


def normalize_math(text: object) -> str:
    """A canonical string for an answer: delimiters, spacing, units and decoration removed."""
    s = strip_math_delimiters(str(text)).strip()
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\bigl", "").replace("\\bigr", "").replace("\\Bigl", "").replace("\\Bigr", "")
    s = _SPACING.sub(" ", s)
    for cmd in ("\\dfrac", "\\tfrac", "\\cfrac"):
        s = s.replace(cmd, "\\frac")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree", "", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = s.replace("{,}", "")
    s = re.sub(r"(?<=[\])])\s*(?:U|∪)\s*(?=[\[(])", r"\\cup ", s)  # (a,b] U [c,d)
    # \text{...}: a whole-answer word is kept, unit groups beside a value are dropped
    whole = re.fullmatch(_TEXT_CMD + r"\s*\{(.*)\}", s.strip(), re.DOTALL)
    if whole and "{" not in whole.group(1):
        s = whole.group(1)
    else:
        without = _TEXT_GROUP.sub("", s).strip()
        s = without if without else _TEXT_GROUP.sub(lambda m: m.group(1), s)
    s = s.strip().rstrip(".").strip()
    s = _IN_PREFIX.sub("", s)
    m = _NUM_WITH_WORDS.fullmatch(s)
    if m and not re.search(r"\\|\(", s):
        s = m.group(1)
    if _THOUSANDS.fullmatch(s.replace(" ", "")):
        s = s.replace(" ", "").replace(",", "")
    return " ".join(s.split())


def compact(s: str) -> str:
    return s.replace(" ", "").lower()
