r"""Is a math answer equal to the gold one? Symbolic equivalence with sympy.

`math_equal(pred, gold)` compares two answer strings (already pulled out of
`\boxed{}`; see `extract`). It handles what MATH, GSM8K and GSM-Hard answers
look like:

- LaTeX: `\frac`/`\dfrac`/`\tfrac` (also `\frac43`, `\frac 59`), `\sqrt{}`,
  `\sqrt[n]{}`, `\pi`, `\infty`, trig and log functions, `^{}`, `\cdot`,
  `\left( … \right)`, spacing commands (`\!`, `\,`), `^\circ`, `\%`, `\$`,
  `\text{}` / `\mbox{}` units (`5.4 \text{ cents}`), `\text{Evelyn}` words,
  mixed numbers (`1\frac{4}{5}`), imaginary `i`;
- thousands separators (`13,138,980`, `10,\!080`) vs floats (`13138980.0`);
- tuples and points `(3, \frac{\pi}{2})` (ordered), bare lists `1,-2` and
  sets `\{…\}` (unordered), `\pm`, intervals `(3,4]` and unions `\cup`,
  `x \in [a,b]`, pmatrix/bmatrix vectors (a one-column matrix equals a tuple);
- equations: `x=5` vs `5`, `y = 2x+3` vs `2x+3`, two equations equal up to sign;
- multiple choice `\text{(C)}` vs `C`.

Numbers compare exactly when both are integral, otherwise with relative
tolerance 1e-6 (GSM-Hard golds carry float noise such as 561161.7000000001).
Expressions with variables compare by `expand(a - b) == 0`, then by numeric
evaluation at three random points. Model output is never `eval`ed as Python:
the LaTeX is translated to a whitelisted token stream (numbers, operators,
single-letter symbols, a fixed set of functions) and parsed with sympy under
empty builtins; sympy work is bounded by a time limit that works in any
thread (`time_limit`) and by refusing exponent towers and huge powers.

Parts: `math_normalize` (the canonical string), `math_sympy` (LaTeX to
sympy), `time_limit`; this module holds the structure (tuples, sets,
intervals, matrices) and the comparison.

Not covered: base-n numerals beyond string equality (`52_8`), factorials and
binomials in LaTeX, units conversion (`1 m` vs `100 cm`), inequalities.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from typing import Any

from edgeagent.scoring.math_normalize import compact, normalize_math
from edgeagent.scoring.math_sympy import ALLOWED_NAMES, to_sympy
from edgeagent.scoring.time_limit import TimeLimitExceeded, time_limit

REL_TOL = 1e-6
TIMEOUT_S = 5.0
_CHOICE = re.compile(r"\(?([A-E])\)?")

# --------------------------------------------------------------------------- structure

_OPEN = "([{"
_CLOSE = ")]}"


def _split_top(s: str, sep: str) -> list[str]:
    """Split on `sep` outside any bracket (`\\{ \\}` count as brackets)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        ch = s[i]
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _closes_at_end(s: str) -> bool:
    """Whether the bracket opening at s[0] closes at the last character."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


Node = tuple[Any, ...]


def _spliced(items: list[Node]) -> list[Node]:
    """`\\{1 \\pm \\sqrt5, -2\\}` holds three values: splice the ± pair into the list."""
    out: list[Node] = []
    for item in items:
        out.extend(item[1] if item[0] == "list" else [item])
    return out


def _structure(s: str) -> Node:
    s = s.strip()
    parts = _split_top(s, "\\cup")
    if len(parts) > 1:
        return ("union", [_structure(p) for p in parts])
    mat = re.fullmatch(r"\\begin\{[pbvB]?matrix\}(.*)\\end\{[pbvB]?matrix\}", s, re.DOTALL)
    if mat:
        rows = [r for r in (x.strip() for x in mat.group(1).split("\\\\")) if r]
        return ("matrix", [[_structure(c) for c in r.split("&")] for r in rows])
    if s.startswith("\\{") and s.endswith("\\}"):
        return ("set", _spliced([_structure(p) for p in _split_top(s[2:-2], ",") if p]))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _closes_at_end(s):
        items = _split_top(s[1:-1], ",")
        if len(items) > 1:
            return ("tuple", s[0], s[-1], [_structure(p) for p in items])
    items = _split_top(s, ",")
    if len(items) > 1:
        return ("list", _spliced([_structure(p) for p in items if p]))
    if s.count("\\pm") == 1:
        return ("list", [("scalar", s.replace("\\pm", "+")), ("scalar", s.replace("\\pm", "-"))])
    if s.count("\\mp") == 1:
        return ("list", [("scalar", s.replace("\\mp", "-")), ("scalar", s.replace("\\mp", "+"))])
    return ("scalar", s)


def _flat(node: Node) -> list[Node] | None:
    """Items of an ordered sequence node (tuple, list, one-row/column matrix)."""
    if node[0] == "tuple":
        return list(node[3])
    if node[0] == "list":
        return list(node[1])
    if node[0] == "matrix":
        rows = node[1]
        if all(len(r) == 1 for r in rows):
            return [r[0] for r in rows]
        if len(rows) == 1:
            return list(rows[0])
    return None


def _multiset_equal(a: list[Node], b: list[Node]) -> bool:
    if len(a) != len(b):
        return False
    left = list(b)
    for x in a:
        for j, y in enumerate(left):
            if _node_equal(x, y):
                del left[j]
                break
        else:
            return False
    return True


def _node_equal(a: Node, b: Node) -> bool:
    ka, kb = a[0], b[0]
    if ka == "scalar" and kb == "scalar":
        return _scalar_equal(a[1], b[1])
    if ka == "tuple" and kb == "tuple":
        return (a[1], a[2]) == (b[1], b[2]) and len(a[3]) == len(b[3]) and all(
            _node_equal(x, y) for x, y in zip(a[3], b[3], strict=True))
    if ka == "union" and kb == "union":
        return _multiset_equal(a[1], b[1])
    if ka == "matrix" and kb == "matrix":
        ra, rb = a[1], b[1]
        return [len(r) for r in ra] == [len(r) for r in rb] and all(
            _node_equal(x, y) for r1, r2 in zip(ra, rb, strict=True)
            for x, y in zip(r1, r2, strict=True))
    if {ka, kb} <= {"set", "list"}:
        return _multiset_equal(a[1], b[1])
    if "union" in (ka, kb) or "scalar" in (ka, kb):
        return False
    fa, fb = _flat(a), _flat(b)  # tuple vs bare list, vector vs tuple: ordered
    if fa is None or fb is None or len(fa) != len(fb):
        return False
    return all(_node_equal(x, y) for x, y in zip(fa, fb, strict=True))


# --------------------------------------------------------------------------- comparison


def _plain_number(s: str) -> float | None:
    try:
        return float(s.replace(" ", ""))
    except ValueError:
        return None


def _close(x: complex, y: complex) -> bool:
    if x == y:
        return True
    return abs(x - y) <= REL_TOL * max(abs(x), abs(y)) + 1e-12


def _integral(x: complex) -> bool:
    return x.imag == 0 and math.isfinite(x.real) and x.real == int(x.real)


def _numbers_equal(x: complex, y: complex) -> bool:
    if _integral(x) and _integral(y) and max(abs(x), abs(y)) < 2**53:
        return x == y
    return _close(x, y)


def _constants_equal(a: Any, b: Any) -> bool:
    """Two constant sympy expressions, at 50 digits (no float overflow for 2^2008)."""
    import sympy

    if a.is_Rational and b.is_Rational:  # exact integers and fractions: exact comparison
        return bool(a == b)
    va, vb = sympy.N(a, 50), sympy.N(b, 50)
    if not (va.is_number and vb.is_number) or va.has(sympy.nan) or vb.has(sympy.nan):
        return False
    ra, ia = va.as_real_imag()
    rb, ib = vb.as_real_imag()
    if ia == 0 and ib == 0:
        fa, fb = sympy.Float(ra, 50), sympy.Float(rb, 50)
        if abs(fa) < sympy.Float(10) ** 40 and fa == fa.round() and fb == fb.round():
            return int(fa.round()) == int(fb.round())  # integers compare exactly
    diff = abs(sympy.N(va - vb, 50))
    scale = max(abs(va), abs(vb))
    return bool(diff <= REL_TOL * scale + sympy.Float("1e-12"))


def _sympy_equal(a: Any, b: Any) -> bool:
    import sympy

    try:
        if a == b:
            return True
    except Exception:
        pass
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        try:
            return _constants_equal(a, b)
        except (TypeError, ValueError, OverflowError, AttributeError):
            return False
    try:
        if sympy.expand(a - b) == 0:
            return True
    except Exception:
        pass
    rng = random.Random(0)
    for _ in range(3):
        point = {s: sympy.Float(rng.uniform(0.1, 2.0)) for s in symbols}
        try:
            if not _constants_equal(a.subs(point), b.subs(point)):
                return False
        except (TypeError, ValueError, OverflowError, AttributeError):
            return False
    return True


def _equation_sides(s: str) -> tuple[str, str] | None:
    if s.count("=") != 1 or any(op in s for op in ("<=", ">=", "\\le", "\\ge", "\\neq")):
        return None
    left, right = s.split("=")
    return left.strip(), right.strip()


_WORD = re.compile(r"[A-Za-z][A-Za-z ]+")


def _is_word(s: str) -> bool:
    return bool(_WORD.fullmatch(s)) and s.strip() not in ALLOWED_NAMES


def _scalar_equal(p: str, g: str) -> bool:
    if compact(p) == compact(g):
        return True
    if _is_word(p) or _is_word(g):  # "even", "Evelyn": words, not products of symbols
        return False
    cp, cg = _CHOICE.fullmatch(p.strip()), _CHOICE.fullmatch(g.strip())
    if cp and cg:
        return cp.group(1) == cg.group(1)
    ep, eg = _equation_sides(p), _equation_sides(g)
    if ep and eg:
        dp = to_sympy(f"({ep[0]})-({ep[1]})")
        dg = to_sympy(f"({eg[0]})-({eg[1]})")
        return dp is not None and dg is not None and (
            _sympy_equal(dp, dg) or _sympy_equal(-dp, dg))
    if ep and len(ep[0]) <= 2:
        return _scalar_equal(ep[1], g)
    if eg and len(eg[0]) <= 2:
        return _scalar_equal(p, eg[1])
    fp, fg = _plain_number(p), _plain_number(g)
    if fp is not None and fg is not None:
        return _numbers_equal(complex(fp), complex(fg))
    a, b = to_sympy(p), to_sympy(g)
    if a is None or b is None:
        return False
    return _sympy_equal(a, b)


def _guarded(fn: Callable[[], bool]) -> bool:
    try:
        with time_limit(TIMEOUT_S):
            return fn()
    except TimeLimitExceeded:
        return False
    except (RecursionError, MemoryError):
        return False


def math_equal(prediction: object, gold: object) -> bool:
    r"""Whether two extracted answers are mathematically the same (see module docstring)."""
    if prediction is None or gold is None:
        return False
    p, g = normalize_math(prediction), normalize_math(gold)
    if not p or not g:
        return False
    if compact(p) == compact(g):
        return True
    return _guarded(lambda: _node_equal(_structure(p), _structure(g)))
