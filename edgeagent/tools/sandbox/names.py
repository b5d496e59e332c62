"""What model code may name: the module allowlist and the refused attribute names.

The lowest layer of the Python guard, imported by `modules`, `objects` and
`policy` and importing none of them. `module_allowed` says which modules
model code may import (or see as a module value); `origin_allowed` says which
modules a function or class handed to model code may be *defined* in: the
importable ones plus the implementation modules behind their public names
(`numpy.lib._index_tricks_impl` is where `numpy.r_` lives), minus the
modules that read files, load foreign code or run tests.

Not covered: applying these rules (`objects`, `policy`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

# Attribute names refused on every object, whatever its type: frames, code and
# generator internals; file, FFI and pickle entry points of numpy; exec-like
# entry points of sympy; process and environment access. A function or class
# whose own `__name__` is one of these is refused wherever it is found.
DENIED_ATTRS = frozenset(INSPECT_ATTRIBUTES) | {
    "gi_frame", "gi_code", "gi_yieldfrom", "gi_suspended",
    "cr_frame", "cr_code", "cr_await", "cr_origin",
    "ag_frame", "ag_code", "ag_await",
    "tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_builtins", "f_code",
    "func_globals", "func_code", "mro",
    "ctypes", "cffi", "ctypeslib", "tofile", "fromfile", "fromregex", "dump", "load", "loads",
    "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "memmap",
    "open_memmap", "DataSource", "show_config", "show_runtime", "get_include", "info",
    "source", "lookfor",
    "lambdify", "preview", "init_session", "init_printing", "autowrap", "ufuncify",
    "exec", "eval", "system", "popen", "spawn", "fork", "environ", "getenv", "putenv",
    "unsetenv", "builtins", "modules", "import_module", "test", "doctest", "as_strided",
}

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
# Public names whose module is not the name model code used.
MODULE_ALIASES = {"numpy.emath": "numpy.lib.scimath"}
# Anywhere in a dotted path, these components are refused.
DENIED_PARTS = frozenset(
    {"utilities", "printing", "plotting", "parsing", "testing", "tests", "interactive",
     "external", "codegen", "lib", "compatibility", "benchmarks", "ctypeslib", "f2py",
     "distutils", "_pytesttester", "_utils", "_internal", "_npyio_impl", "_datasource",
     "format", "_utils_impl", "memmap", "records", "_add_newdocs", "conftest", "_pickle",
     "pickle"}
)
# Modules model code cannot import whose functions and classes it may still
# hold (re-exported at the top of an allowed package).
EXTRA_ORIGINS = frozenset(
    {"sympy.utilities.iterables", "sympy.printing.latex", "sympy.printing.str",
     "sympy.printing.repr", "sympy.printing.pretty.pretty", "sympy.printing.printer",
     "sympy.utilities.decorator", "_functools", "_collections",
     "_collections_abc", "_datetime", "_pydatetime", "_statistics", "_sre", "re._parser",
     "re._compiler", "_strptime", "mpmath.ctx_mp_python", "mpmath.ctx_mp",
     "mpmath.matrices.matrices", "gmpy2", "gmpy2.gmpy2", "flint"}
)
# Functions refused by where they are defined and their name, where the name
# alone is too common to refuse everywhere (`numpy.var` is a variance).
DENIED_OBJECTS = frozenset({("sympy.core.symbol", "var")})
# C code imports these helpers of allowed modules through the model's
# `__import__` (`datetime.strptime` imports `_strptime`).
LIBRARY_IMPORTS = frozenset({"numpy", "sympy", "mpmath", "_strptime"})
# numpy's implementation modules behind its public names.
_NUMPY_IMPL = re.compile(
    r"numpy\.((_core|core)\.\w+|lib\.\w+|(linalg|random|fft|polynomial|ma)\.\w+)$"
)
# numpy implementation modules that read or write files, reach ctypes or raw
# memory, pickle, or run tests (numpy 2 names and numpy 1.26's); `as_strided`
# is refused by its name, its siblings (`broadcast_to`) are fine.
_IMPL_DENIED = (DENIED_PARTS - {"lib"}) | {"npyio", "utils", "_version"}
# Modules whose public attributes are limited to a list.
ONLY_ATTRS: dict[str, frozenset[str]] = {
    "time": frozenset(
        {"time", "sleep", "perf_counter", "monotonic", "process_time", "time_ns",
         "perf_counter_ns", "monotonic_ns", "gmtime", "localtime", "mktime", "strftime",
         "strptime", "asctime", "ctime", "struct_time", "timezone", "altzone", "daylight",
         "tzname"}
    ),
}
# Builtins model code gets by name (and may hold wherever it finds them).
SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "classmethod", "complex", "dict", "divmod", "enumerate", "filter", "float", "format",
    "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len",
    "list", "map", "max", "min", "next", "object", "oct", "ord", "pow", "property", "range",
    "repr", "reversed", "round", "set", "slice", "sorted", "staticmethod", "str", "sum",
    "super", "tuple", "zip", "ArithmeticError", "AssertionError", "AttributeError",
    "Exception", "FloatingPointError", "ImportError", "IndexError", "KeyError",
    "LookupError", "MemoryError", "ModuleNotFoundError", "NameError", "NotImplementedError",
    "OverflowError", "RecursionError", "RuntimeError", "StopIteration", "TimeoutError",
    "TypeError", "UnboundLocalError", "UnicodeDecodeError", "UnicodeEncodeError",
    "UnicodeError", "ValueError", "ZeroDivisionError",
)
# The module name model code runs under (its functions and classes say so).
SANDBOX_MODULE = "__sandbox__"


def module_allowed(name: str) -> bool:
    """Whether model code may import `name` (or hold it as a module value)."""
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


def origin_allowed(name: object) -> bool:
    """Whether a function or class defined in module `name` may reach model code."""
    if not isinstance(name, str):
        return False
    if name == SANDBOX_MODULE or name in EXTRA_ORIGINS or module_allowed(name):
        return True
    if name in MODULE_ALIASES.values():
        return True
    if _NUMPY_IMPL.match(name):
        return not any(p in _IMPL_DENIED for p in name.split(".")[1:])
    return False


def allowed_list() -> str:
    return ", ".join(sorted(ALLOWED_MODULES))


def public_names(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("_") and n not in DENIED_ATTRS)
