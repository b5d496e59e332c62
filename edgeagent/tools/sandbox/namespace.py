"""The namespace model code runs in: its builtins and the guard names.

`make_builtins` is the `__builtins__` of model code: the safe builtins
(`names.SAFE_BUILTINS`), a one-argument `type()` that hands out only classes
model code may hold, a `dir()` without private names, the guarded
`getattr`/`hasattr`, the allowlisting `__import__`, and the host tools.
`make_globals` adds the names RestrictedPython's compiled code calls
(`_getattr_`, `_getitem_`, `_write_`, ...) and the provenance checks
(`_vet_`, `_decorate_`).

Not covered: the guards themselves (`policy`), what may be held (`objects`).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from edgeagent.tools.sandbox.names import DENIED_ATTRS, SAFE_BUILTINS
from edgeagent.tools.sandbox.objects import Refused, trust, vet, vetted_iter
from edgeagent.tools.sandbox.policy import (
    NO_VALUE,
    apply_call,
    guarded_getattr,
    guarded_getitem,
    guarded_hasattr,
    guarded_write,
    inplacevar,
    sandbox_metaclass,
    vetting_decorator,
)


def _safe_type(obj: Any) -> type:
    """`type(x)` only (three arguments would build classes with dunders), and
    only when model code may hold that class: `type(f)` is not `function`."""
    cls = type(obj)
    try:
        allowed: type = vet(cls)
    except Refused:
        name = cls.__name__
        raise TypeError(f"type() of a {name} object is not available in the sandbox") from None
    return allowed


_safe_type.__name__ = _safe_type.__qualname__ = "type"


def _safe_dir(obj: Any = NO_VALUE) -> list[str]:
    if obj is NO_VALUE:
        raise TypeError("dir() needs an argument in the sandbox")
    return sorted(n for n in dir(obj) if not n.startswith("_") and n not in DENIED_ATTRS)


def make_builtins(
    importer: Callable[..., Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The `__builtins__` of model code. No open/eval/exec/compile/globals/vars/
    input/setattr/delattr; `__import__` is the allowlisting importer."""
    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    table.update(
        {
            "True": True, "False": False, "None": None,
            "NotImplemented": NotImplemented, "Ellipsis": Ellipsis,
            "__build_class__": builtins.__build_class__,
            "__import__": importer,
            "getattr": guarded_getattr,
            "hasattr": guarded_hasattr,
            "type": _safe_type,
            "dir": _safe_dir,
        }
    )
    if extra:
        table.update(extra)
    trust(*table.values())
    return table


def make_globals(
    builtins_table: dict[str, Any], collector_factory: Callable[[Any], Any]
) -> dict[str, Any]:
    """A fresh module namespace for a session: builtins plus the guard names."""
    return {
        "__builtins__": builtins_table,
        "__name__": "__sandbox__",
        "__metaclass__": sandbox_metaclass,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": vetted_iter,
        "_vet_": vet,
        "_decorate_": vetting_decorator,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": inplacevar,
        "_apply_": apply_call,
        "_print_": collector_factory,
        "_slice_": slice,
    }
