r"""LaTeX to sympy without `eval` of model output: `to_sympy(s)`.

The LaTeX scalar is translated to a whitelisted token stream (numbers,
operators, single-letter symbols, a fixed set of functions: `FUNCTIONS`,
`ALLOWED_NAMES`), with `\frac`, `\sqrt[n]{}`, `\sin^2 x` and mixed numbers
expanded, then parsed with sympy under empty builtins. Exponent towers and
powers above 10,000 are refused (they would hang sympy). Not covered: deciding
equality (`math_equiv`), normalisation (`math_normalize`).
"""

from __future__ import annotations

import re
from typing import Any

MAX_LEN = 400

FUNCTIONS = {
    "sin": "sin", "cos": "cos", "tan": "tan", "cot": "cot", "sec": "sec", "csc": "csc",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "sinh": "sinh", "cosh": "cosh",
    "tanh": "tanh", "ln": "log", "log": "log", "exp": "exp",
}
_CONSTS = {"pi": "pi", "infty": "oo", "infinity": "oo", "cdot": "*", "times": "*",
           "div": "/", "ast": "*"}
_POWER_OF_FUNCTION = re.compile(
    r"\\(sin|cos|tan|cot|sec|csc|sinh|cosh|tanh|ln|log)\^\{?(\d)\}?\s*"
    r"([A-Za-z0-9]|\\pi|\([^()]*\))")
ALLOWED_NAMES = {"sqrt", "root", "pi", "oo", "I", "E", *set(FUNCTIONS.values())}


def _arg(s: str, i: int) -> tuple[str, int] | None:
    """One LaTeX argument at s[i:]: a brace group or a single character/command."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1:j], j + 1
        return None
    if s[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[i:])
        if m:
            return m.group(0), i + m.end()
    return s[i], i + 1


def _expand_commands(s: str) -> str | None:
    r"""`\frac{a}{b}` -> `((a)/(b))`, `\sqrt[n]{x}` -> `root(x,n)`, `\sqrt{x}` -> `sqrt(x)`."""
    out: list[str] = []
    i = 0
    while i < len(s):
        if s.startswith("\\frac", i) and not s[i + 5:i + 6].isalpha():
            num = _arg(s, i + 5)
            if num is None:
                return None
            den = _arg(s, num[1])
            if den is None:
                return None
            a, b = _expand_commands(num[0]), _expand_commands(den[0])
            if a is None or b is None:
                return None
            out.append(f"(({a})/({b}))")
            i = den[1]
            continue
        if s.startswith("\\sqrt", i):
            j = i + 5
            index = None
            if s[j:j + 1] == "[":
                close = s.find("]", j)
                if close < 0:
                    return None
                index, j = s[j + 1:close], close + 1
            arg = _arg(s, j)
            if arg is None:
                return None
            inner = _expand_commands(arg[0])
            if inner is None:
                return None
            if index is not None:
                idx = _expand_commands(index)
                if idx is None:
                    return None
                out.append(f"root({inner},{idx})")
            else:
                out.append(f"sqrt({inner})")
            i = arg[1]
            continue
        out.append(s[i])
        i += 1
    return "".join(out)


def _to_python(s: str) -> str | None:
    """A whitelisted Python expression string for a LaTeX scalar, or None."""
    if len(s) > MAX_LEN:
        return None
    s = re.sub(r"^(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$", r"(\1+\\frac{\2}{\3})", s.strip())
    s = s.replace("\\mathrm{e}", "E")
    # \sin^2 x -> (\sin x)^2
    s = _POWER_OF_FUNCTION.sub(r"(\\\1 \3)^\2", s)
    expanded = _expand_commands(s)
    if expanded is None:
        return None

    def command(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in FUNCTIONS:
            return f" {FUNCTIONS[name]} "
        if name in _CONSTS:
            return f" {_CONSTS[name]} "
        raise ValueError(name)

    try:
        s = re.sub(r"\\([a-zA-Z]+)", command, expanded)
    except ValueError:
        return None
    s = s.replace("{", "(").replace("}", ")").replace("^", "**")
    if re.search(r"[^0-9A-Za-z+\-*/().\s]", s):
        return None
    if "__" in s or re.search(r"[A-Za-z]\.|\.[A-Za-z]", s):
        return None

    def names(m: re.Match[str]) -> str:
        word = m.group(0)
        if word in ALLOWED_NAMES:
            return word
        if word == "i":
            return "I"
        return "*".join(word)  # xy -> x*y: single-letter symbols only

    s = re.sub(r"(?<![0-9.])[A-Za-z]+|(?<=[0-9])[A-Za-z]+", names, s)
    # exponent towers and huge powers would hang sympy
    if re.search(r"\*\*\s*\(?[^)]*\*\*", s):
        return None
    for m in re.finditer(r"\*\*\s*\(?\s*(\d+)", s):
        if int(m.group(1)) > 10_000:
            return None
    return s


def _sympy_namespace() -> tuple[dict[str, Any], dict[str, Any]]:
    import sympy

    glob: dict[str, Any] = {"__builtins__": {}}
    for name in ("Integer", "Float", "Rational", "Symbol", "Function", "sqrt", "root", "pi",
                 "oo", "I", "E", "Mul", "Add", "Pow", *set(FUNCTIONS.values())):
        glob[name] = getattr(sympy, name)
    local = {c: sympy.Symbol(c) for c in "abcdfghjklmnopqrstuvwxyzABCDFGHJKLMNOPQRSTUVWXYZ"}
    local.update({"i": sympy.I, "I": sympy.I, "e": sympy.E, "E": sympy.E})
    return glob, local


def to_sympy(s: str) -> Any:
    """A sympy expression for a LaTeX/plain scalar, or None when it does not parse."""
    py = _to_python(s)
    if py is None or not py.strip():
        return None
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    glob, local = _sympy_namespace()
    try:
        return parse_expr(
            py, local_dict=local, global_dict=glob,
            transformations=(*standard_transformations, implicit_multiplication_application,
                             convert_xor),
        )
    except Exception:  # sympy raises anything from SyntaxError to TypeError
        return None
