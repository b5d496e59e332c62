"""The import allowlist and the read-only module proxies model code receives.

`import x` in model code reaches `guarded_import`: only the allowlisted
modules (math, re, itertools, collections, fractions, statistics, datetime,
functools, time — its clock functions only —, numpy, sympy and chosen
submodules of the last two) import, and model code receives a `ModuleProxy`,
never the module object: it cannot set attributes, sees no private names, no
denied names (file, FFI, exec-like entry points), no submodule outside the
allowlist, and gets copies of module-level dicts, lists and sets, so it cannot
poison a module for later calls. numpy and sympy are imported lazily, on the
first `import`, so the worker starts fast. sympy's string parser (reached by
`sympify("...")`) evaluates Python code; it is wrapped to refuse private names
and dangerous identifiers.

Not covered: attribute guards on non-module objects (`policy`).
"""

from __future__ import annotations

import importlib
import re
import types
from collections.abc import Callable
from typing import Any

from edgeagent.tools.sandbox.policy import DENIED_ATTRS, public_names

# Top-level module -> allowed submodule heads (first component after the top).
ALLOWED_MODULES: dict[str, frozenset[str]] = {
    "math": frozenset(),
    "re": frozenset(),
    "itertools": frozenset(),
    "collections": frozenset({"abc"}),
    "fractions": frozenset(),
    "statistics": frozenset(),
    "datetime": frozenset(),
    "functools": frozenset(),
    "time": frozenset(),
    "numpy": frozenset(
        {"linalg", "random", "fft", "polynomial", "ma", "emath", "char", "strings",
         "exceptions", "dtypes"}
    ),
    "sympy": frozenset(
        {"abc", "algebras", "assumptions", "calculus", "combinatorics", "concrete", "core",
         "crypto", "discrete", "functions", "geometry", "holonomic", "integrals", "logic",
         "matrices", "ntheory", "physics", "polys", "series", "sets", "simplify", "solvers",
         "stats", "tensor", "vector"}
    ),
}
# Anywhere in a dotted path, these components are refused.
DENIED_PARTS = frozenset(
    {"utilities", "printing", "plotting", "parsing", "testing", "tests", "interactive",
     "external", "codegen", "lib", "compatibility", "benchmarks", "ctypeslib", "f2py"}
)
# Modules whose public attributes are limited to a list.
ONLY_ATTRS: dict[str, frozenset[str]] = {
    "time": frozenset(
        {"time", "sleep", "perf_counter", "monotonic", "process_time", "time_ns",
         "perf_counter_ns", "monotonic_ns", "gmtime", "localtime", "mktime", "strftime",
         "strptime", "asctime", "ctime", "struct_time", "timezone", "altzone", "daylight",
         "tzname"}
    ),
}


def module_allowed(name: str) -> bool:
    parts = name.split(".")
    heads = ALLOWED_MODULES.get(parts[0])
    if heads is None:
        return False
    rest = parts[1:]
    if not rest:
        return True
    if rest[0] not in heads:
        return False
    return not any(p.startswith("_") or p in DENIED_PARTS for p in rest)


def allowed_list() -> str:
    return ", ".join(sorted(ALLOWED_MODULES))


class ModuleProxy:
    """A read-only view of an allowlisted module."""

    __slots__ = ("_sandbox_module", "_sandbox_name")

    def __init__(self, module: types.ModuleType, name: str) -> None:
        object.__setattr__(self, "_sandbox_module", module)
        object.__setattr__(self, "_sandbox_name", name)

    def __getattr__(self, name: str) -> Any:
        modname = self._sandbox_name
        only = ONLY_ATTRS.get(modname)
        if name.startswith("_") or name in DENIED_ATTRS or (only is not None and name not in only):
            raise AttributeError(f"module '{modname}' has no attribute '{name}' in the sandbox")
        try:
            value = getattr(self._sandbox_module, name)
        except AttributeError:
            sub = f"{modname}.{name}"
            if not module_allowed(sub):
                raise AttributeError(f"module '{modname}' has no attribute '{name}'") from None
            value = real_import(sub)
        if isinstance(value, types.ModuleType):
            return proxy_for(value, f"{modname}.{name}")
        if type(value) in (dict, list, set):
            return value.copy()
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("modules are read-only in the sandbox")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("modules are read-only in the sandbox")

    def __dir__(self) -> list[str]:
        only = ONLY_ATTRS.get(self._sandbox_name)
        names = public_names(dir(self._sandbox_module))
        return [n for n in names if only is None or n in only]

    def __repr__(self) -> str:
        return f"<module '{self._sandbox_name}'>"


_proxies: dict[str, ModuleProxy] = {}


def proxy_for(module: types.ModuleType, name: str | None = None) -> ModuleProxy:
    """The proxy of an allowlisted module, seen under `name` (default: its own
    name; `numpy.emath` is really `numpy.lib.scimath`); AttributeError for any
    other module."""
    real = getattr(module, "__name__", "?")
    name = real if name is None else name
    if (
        not isinstance(real, str)
        or not module_allowed(name)
        or real.split(".")[0] != name.split(".")[0]
    ):
        raise AttributeError(f"module '{name}' is not available in the sandbox")
    proxy = _proxies.get(name)
    if proxy is None or proxy._sandbox_module is not module:
        proxy = _proxies[name] = ModuleProxy(module, name)
    return proxy


def real_import(name: str) -> types.ModuleType:
    """Import an allowlisted module for real (trusted side), patching as needed."""
    module = importlib.import_module(name)
    top = name.split(".")[0]
    if top == "sympy" and "sympy" not in _patched:
        _patch_sympy()
    return module


def make_importer(
    before: Callable[[], None] | None = None, after: Callable[[], None] | None = None
) -> Callable[..., Any]:
    """The `__import__` of model code. `before`/`after` bracket a real import
    (the worker pauses its soft timeout there, so a first `import sympy` is never
    cut halfway and left half-initialised)."""

    def guarded_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> ModuleProxy:
        if not isinstance(name, str) or level != 0:
            raise ImportError("relative imports are not allowed")
        if not module_allowed(name):
            raise ImportError(
                f"Import of {name} is not allowed. Authorized imports are: {allowed_list()}"
            )
        if before is not None:
            before()
        try:
            module = real_import(name)
            if not fromlist:
                module = real_import(name.split(".")[0])
        finally:
            if after is not None:
                after()
        return proxy_for(module)

    return guarded_import


# ---------------------------------------------------------------- sympy string parsing

_patched: set[str] = set()
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARSE_DENIED = frozenset(
    {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals",
     "vars", "input", "breakpoint", "help", "memoryview", "exit", "quit", "lambda", "import",
     "os", "sys", "subprocess", "builtins", "importlib", "ctypes", "type", "object", "super",
     "classmethod", "staticmethod", "property", "dir", "print"}
) | DENIED_ATTRS


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

    sympy_parser.parse_expr = parse_expr
    import sympy

    if hasattr(sympy, "parse_expr"):
        sympy.parse_expr = parse_expr
    _patched.add("sympy")
