"""Importing allowlisted modules for real, on the trusted side of the guard.

`real_import` imports a module model code asked for (after `objects` checked
the name) and patches what needs patching: sympy's string parser (reached by
`sympify("...")`) evaluates Python code, so it is wrapped to refuse private
names and dangerous identifiers. numpy and sympy are imported lazily, on the
first `import`, so the worker starts fast.

Not covered: which names may be imported (`names`), the proxies and checks on
what model code receives (`objects`).
"""

from __future__ import annotations

import importlib
import re
import types
from typing import Any

from edgeagent.tools.sandbox.names import ALLOWED_MODULES, DENIED_ATTRS

__all__ = ["ALLOWED_MODULES", "check_parse_input", "real_import", "trusted_wrappers"]

_patched: set[str] = set()
# Our own wrappers that stand in for library functions (checked by identity).
trusted_wrappers: list[Any] = []
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARSE_DENIED = frozenset(
    {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals",
     "vars", "input", "breakpoint", "help", "memoryview", "exit", "quit", "lambda", "import",
     "os", "sys", "subprocess", "builtins", "importlib", "ctypes", "type", "object", "super",
     "classmethod", "staticmethod", "property", "dir", "print"}
) | DENIED_ATTRS


def real_import(name: str) -> types.ModuleType:
    """Import an allowlisted module for real (trusted side), patching as needed."""
    module = importlib.import_module(name)
    if name.split(".")[0] == "sympy" and "sympy" not in _patched:
        _patch_sympy()
    return module


def check_parse_input(text: object) -> None:
    """Refuse a sympy parse string that names private or dangerous identifiers."""
    if not isinstance(text, str):
        return
    for ident in _IDENT.findall(text):
        if ident.startswith("_") or ident in _PARSE_DENIED:
            raise ValueError(f"sympify: the name '{ident}' is not allowed in the sandbox")


def _patch_sympy() -> None:
    from sympy.parsing import sympy_parser

    original = sympy_parser.parse_expr

    def parse_expr(s: str, *args: Any, **kwargs: Any) -> Any:
        check_parse_input(s)
        return original(s, *args, **kwargs)

    parse_expr.__module__ = original.__module__
    parse_expr.__qualname__ = original.__qualname__
    trusted_wrappers.append(parse_expr)
    sympy_parser.parse_expr = parse_expr
    import sympy

    if hasattr(sympy, "parse_expr"):
        sympy.parse_expr = parse_expr
    _patched.add("sympy")
