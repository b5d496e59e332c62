"""What model code may hold: module proxies and the provenance check on every value.

Every object model code obtains (an attribute, an item, a call's return
value, an iterated element, an imported module) passes `vet`. It is allowed
when it is a plain value (numbers, strings, containers, ...), a proxy of an
allowlisted module, or a function, class or instance whose class is
*defined* in an allowed module (`names.origin_allowed`): numpy, sympy, the
allowlisted standard modules, or the model's own code. Anything else is
refused wherever it comes from: `os.system` reached through a sympy helper,
`importlib.import_module` re-exported by a submodule, a test runner, a
lazy importer, `type(f)` returning the real `function` class. Classes and
functions whose own name is a refused name (`load`, `tofile`, `test`, ...)
are refused too.

Model code receives a `ModuleProxy`, never a module object: it cannot set
attributes, sees no private or denied names, no module outside the
allowlist (checked against the module's real name, so `numpy.ma.core.np`
is not a way around it), and gets copies of module-level dicts, lists and
sets, so it cannot poison a module for later calls.

Not covered: attribute names and the compile-time rules (`policy`), the
tables (`names`), importing for real (`modules`).
"""

from __future__ import annotations

import builtins
import functools
import types
from collections.abc import Callable, Iterator
from typing import Any

from edgeagent.tools.sandbox.modules import real_import, trusted_wrappers
from edgeagent.tools.sandbox.names import (
    DENIED_ATTRS,
    DENIED_OBJECTS,
    LIBRARY_IMPORTS,
    MODULE_ALIASES,
    ONLY_ATTRS,
    SAFE_BUILTINS,
    SANDBOX_MODULE,
    allowed_list,
    module_allowed,
    origin_allowed,
    public_names,
)

PLAIN = frozenset(
    {int, float, complex, bool, str, bytes, bytearray, type(None), list, tuple, dict, set,
     frozenset, range, slice, type(Ellipsis), type(NotImplemented)}
)
# Builtin classes whose *instances* model code meets in ordinary code.
_HARMLESS_INSTANCES = frozenset(
    {"generator", "list_iterator", "list_reverseiterator", "tuple_iterator", "range_iterator",
     "longrange_iterator", "str_iterator", "str_ascii_iterator", "bytes_iterator",
     "bytearray_iterator", "set_iterator", "dict_keyiterator", "dict_valueiterator",
     "dict_itemiterator", "dict_reversekeyiterator", "dict_reversevalueiterator",
     "dict_reverseitemiterator", "dict_keys", "dict_values", "dict_items", "callable_iterator",
     "iterator", "reversed", "super", "property", "classmethod", "staticmethod", "cell"}
)
_SAFE_BUILTIN_NAMES = frozenset(SAFE_BUILTINS)
_DESCRIPTORS = (
    types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType,
)
# Cython's function types (numpy.random): judged like functions, by __module__.
_CYTHON_FUNCTIONS = frozenset({"cython_function_or_method", "fused_cython_function"})
_trusted: set[int] = set()
_keep: list[Any] = []  # what `_trusted` names, so the ids stay unique
_class_verdicts: dict[type, bool] = {}


class Refused(AttributeError):
    """Model code asked for an object the sandbox does not hand out."""


def trust(*objs: Any) -> None:
    """Our own callables given to model code by name (builtins, host tools)."""
    for obj in objs:
        _trusted.add(id(obj))
        _keep.append(obj)


def _refuse(obj: Any) -> Refused:
    what = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    where = getattr(obj, "__module__", None) or type(obj).__module__
    return Refused(f"'{where}.{what}' is not available in the sandbox")


def class_allowed(cls: type) -> bool:
    """A class model code may hold (and whose instances it may hold)."""
    verdict = _class_verdicts.get(cls)
    if verdict is None:
        verdict = _class_verdict(cls)
        _class_verdicts[cls] = verdict
    return verdict


def _class_verdict(cls: type) -> bool:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__name__", "")
    if module == "builtins":
        return cls in PLAIN or name in _SAFE_BUILTIN_NAMES or issubclass(cls, BaseException)
    if module == SANDBOX_MODULE:
        return True
    qualname = getattr(cls, "__qualname__", "")
    if "<locals>" in qualname or name in DENIED_ATTRS:  # factories' internals, named I/O
        return False
    return origin_allowed(module)


def _instance_allowed(obj: Any) -> bool:
    cls = type(obj)
    if cls.__module__ == "builtins" and cls.__name__ in _HARMLESS_INSTANCES:
        return True
    return class_allowed(cls)


def _function_allowed(fn: Any) -> bool:
    if isinstance(fn, types.FunctionType):
        origin = fn.__globals__.get("__name__")
        if origin == SANDBOX_MODULE:
            return True
        if any(fn is w for w in trusted_wrappers):
            return True
        if (origin, fn.__name__) in DENIED_OBJECTS:
            return False
        return fn.__name__ not in DENIED_ATTRS and origin_allowed(origin)
    if isinstance(fn, types.MethodType):
        return _allowed(fn.__func__)
    name = getattr(fn, "__name__", "")
    if name in DENIED_ATTRS:
        return False
    if isinstance(fn, types.BuiltinFunctionType):
        owner = fn.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            origin = fn.__module__ or getattr(owner, "__name__", None)
            if origin == "builtins":
                return name in _SAFE_BUILTIN_NAMES and getattr(builtins, name, None) is fn
            return origin_allowed(origin)
        return _allowed(owner)
    if isinstance(fn, types.MethodWrapperType):
        return _allowed(fn.__self__)
    return class_allowed(fn.__objclass__)  # the descriptor types


def _allowed(obj: Any) -> bool:
    if type(obj) in PLAIN or id(obj) in _trusted or isinstance(obj, ModuleProxy):
        return True
    if isinstance(obj, type):
        return class_allowed(obj)
    if isinstance(obj, (types.FunctionType, types.MethodType, types.BuiltinFunctionType,
                        types.MethodWrapperType, *_DESCRIPTORS)):
        return _function_allowed(obj)
    if type(obj).__name__ in _CYTHON_FUNCTIONS:
        name = getattr(obj, "__name__", "")
        return name not in DENIED_ATTRS and origin_allowed(getattr(obj, "__module__", None))
    if not _instance_allowed(obj):
        return False
    if isinstance(obj, functools.partial):
        return _allowed(obj.func)
    if type(obj).__module__ == "functools":  # lru_cache and friends: what they wrap
        wrapped = getattr(obj, "__wrapped__", None)
        return wrapped is None or _allowed(wrapped)
    return True


def vet(obj: Any) -> Any:
    """`obj` if model code may hold it (a module becomes its proxy); else `Refused`."""
    if type(obj) in PLAIN:
        return obj
    if isinstance(obj, types.ModuleType):
        return proxy_for(obj)
    if _allowed(obj):
        return obj
    raise _refuse(obj)


def vetted_iter(ob: Any) -> Iterator[Any]:
    """`_getiter_`: iteration whose elements pass `vet`."""
    it = iter(ob)
    if type(ob) in (range, str, bytes):
        return it
    return _vetting(it)


def _vetting(it: Iterator[Any]) -> Iterator[Any]:
    for item in it:
        yield item if type(item) in PLAIN else vet(item)


# ---------------------------------------------------------------- module proxies


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
        return vet(value)

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


def proxy_for(module: types.ModuleType, seen_as: str | None = None) -> ModuleProxy:
    """The proxy of an allowlisted module; `Refused` for any other module.

    The module's real name decides; `seen_as` only matters for the public
    aliases (`numpy.emath` is really `numpy.lib.scimath`)."""
    real = getattr(module, "__name__", None)
    if not isinstance(real, str):
        raise Refused("this module is not available in the sandbox")
    if module_allowed(real):
        name = real
    elif seen_as is not None and MODULE_ALIASES.get(seen_as) == real:
        name = seen_as
    else:
        raise Refused(f"module '{seen_as or real}' is not available in the sandbox")
    proxy = _proxies.get(name)
    if proxy is None or proxy._sandbox_module is not module:
        proxy = _proxies[name] = ModuleProxy(module, name)
    return proxy


def make_importer(
    before: Callable[[], None] | None = None, after: Callable[[], None] | None = None
) -> Callable[..., Any]:
    """The `__import__` of model code. `before`/`after` bracket a real import
    (the worker pauses its soft timeout there, so a first `import sympy` is never
    cut halfway and left half-initialised).

    C code inside an allowed package imports its own submodules through the
    current frame's `__import__` too (numpy's `ndarray.mean` does, with an
    empty *list* as fromlist, where the `import` statement passes a tuple or
    None): those are the library's imports, not the model's, and go through
    when the package is allowed; their module is not handed out."""

    def guarded_import(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        if not isinstance(name, str) or level != 0:
            raise ImportError("relative imports are not allowed")
        if type(fromlist) is list and name.split(".")[0] in LIBRARY_IMPORTS:
            real_import(name)
            return None
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
        return proxy_for(module, name if fromlist else None)

    return guarded_import
