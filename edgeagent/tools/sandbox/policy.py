"""RestrictedPython policy: what model code may compile to and reach at run time.

Covers compilation (`compile_snippet`: RestrictedPython's checks plus:
`a[k] += v` / `obj.x += v` are allowed, rewritten through the guards; every
call's result and every decorator's result pass `_vet_`; the last
expression's value is kept for the observation), the guard functions
RestrictedPython calls (`_getattr_`, `_getitem_`, `_write_`, `_inplacevar_`,
`_apply_`, `_print_`), and the safe `str.format`. This is the Python layer;
the OS layer (`confine`) assumes it is broken. What values model code may
hold is `objects`; the name tables are `names`; the builtins `namespace`.

Does not cover running the code, timeouts or output transport (`session`).
"""

from __future__ import annotations

import _string
import ast
import functools
import operator
import string
import types
import weakref
from collections.abc import Callable
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from edgeagent.tools.sandbox.names import DENIED_ATTRS
from edgeagent.tools.sandbox.objects import proxy_for, trust, vet

LAST_VALUE = "_last_value_"
NO_VALUE: Any = object()


class SandboxError(Exception):
    """An operation the sandbox refuses, reported to model code as an exception."""


# ---------------------------------------------------------------- compilation


class SnippetTransformer(RestrictingNodeTransformer):
    """RestrictedPython's checks, plus item/attribute augmented assignment and
    capture of the last expression value."""

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if isinstance(target, ast.Name):
            return super().visit_AugAssign(node)
        if isinstance(target, ast.Attribute) and (
            target.attr.startswith("_") or target.attr in DENIED_ATTRS
        ):
            self.error(node, f'"{target.attr}" is an invalid attribute name.')
            return node
        op = ast.Constant(type(node.op).__name__)
        obj_tmp = self.gen_tmp_name()
        value = self.visit(target.value)
        stmts: list[ast.stmt] = [ast.Assign([ast.Name(obj_tmp, ast.Store())], value)]
        obj = ast.Name(obj_tmp, ast.Load())
        rhs = self.visit(node.value)
        if isinstance(target, ast.Subscript):
            key_tmp = self.gen_tmp_name()
            stmts.append(
                ast.Assign([ast.Name(key_tmp, ast.Store())], self._slice_expr(target.slice))
            )
            key = ast.Name(key_tmp, ast.Load())
            current: ast.expr = ast.Call(ast.Name("_getitem_", ast.Load()), [obj, key], [])
            store: ast.expr = ast.Subscript(
                ast.Call(ast.Name("_write_", ast.Load()), [obj], []), key, ast.Store()
            )
        else:
            assert isinstance(target, ast.Attribute)
            current = ast.Call(
                ast.Name("_getattr_", ast.Load()), [obj, ast.Constant(target.attr)], []
            )
            store = ast.Attribute(
                ast.Call(ast.Name("_write_", ast.Load()), [obj], []), target.attr, ast.Store()
            )
        new_value = ast.Call(ast.Name("_inplacevar_", ast.Load()), [op, current, rhs], [])
        stmts.append(ast.Assign([store], new_value))
        for stmt in stmts:
            ast.copy_location(stmt, node)
            ast.fix_missing_locations(stmt)
        return stmts

    def _slice_expr(self, node: ast.expr) -> ast.expr:
        """A subscript's slice as an expression that can be stored in a name."""
        if isinstance(node, ast.Slice):
            parts = [
                self.visit(p) if p is not None else ast.Constant(None)
                for p in (node.lower, node.upper, node.step)
            ]
            return ast.Call(ast.Name("_slice_", ast.Load()), parts, [])
        if isinstance(node, ast.Tuple):
            return ast.Tuple([self._slice_expr(e) for e in node.elts], ast.Load())
        result: ast.expr = self.visit(node)
        return result

    def visit_Call(self, node: ast.Call) -> Any:
        """Every call's return value passes `_vet_` (see `objects.vet`)."""
        visited = super().visit_Call(node)
        assert isinstance(visited, ast.expr)
        wrapped = ast.Call(ast.Name("_vet_", ast.Load()), [visited], [])
        ast.copy_location(wrapped, node)
        ast.fix_missing_locations(wrapped)
        return wrapped

    def _vet_decorators(self, node: Any) -> Any:
        """`@d` becomes `@_decorate_(d)`: what a decorator returns passes `_vet_` too."""
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = [
                ast.copy_location(ast.Call(ast.Name("_decorate_", ast.Load()), [d], []), d)
                for d in node.decorator_list
            ]
            ast.fix_missing_locations(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        return self._vet_decorators(super().visit_FunctionDef(node))

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        return self._vet_decorators(super().visit_ClassDef(node))

    def visit_Module(self, node: ast.Module) -> Any:
        visited = super().visit_Module(node)
        assert isinstance(visited, ast.Module)
        node = visited
        if node.body:
            last = node.body[-1]
            capture: ast.expr | None = None
            if isinstance(last, ast.Expr):
                capture = last.value
                node.body[-1] = ast.Assign([ast.Name(LAST_VALUE, ast.Store())], capture)
            elif (
                isinstance(last, ast.Assign)
                and len(last.targets) == 1
                and isinstance(last.targets[0], ast.Name)
            ):
                node.body.append(
                    ast.Assign(
                        [ast.Name(LAST_VALUE, ast.Store())],
                        ast.Name(last.targets[0].id, ast.Load()),
                    )
                )
            ast.copy_location(node.body[-1], last)
            ast.fix_missing_locations(node)
        return node


def compile_snippet(code: str, filename: str = "<code>") -> types.CodeType:
    """Compile model code under the policy; raise SyntaxError with every complaint."""
    result = compile_restricted_exec(code, filename=filename, policy=SnippetTransformer)
    if result.errors or result.code is None:
        raise SyntaxError("\n".join(result.errors) or "the code could not be compiled")
    return result.code


# ---------------------------------------------------------------- guards

_model_classes: weakref.WeakSet[type] = weakref.WeakSet()
_formatter_cache: dict[str, Any] = {}


def _check_attr_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in DENIED_ATTRS:
        raise AttributeError(f"access to attribute '{name}' is not allowed")
    return name


class _SafeFormatter(string.Formatter):
    """`str.format` whose `{0.attr}` / `{0[key]}` fields go through the guards."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = guarded_getattr(obj, key) if is_attr else guarded_getitem(obj, key)
        return obj, first


_FORMATTER = _SafeFormatter()


def _safe_format(template: str, /, *args: Any, **kwargs: Any) -> str:
    return _FORMATTER.vformat(template, args, kwargs)


def _safe_format_map(template: str, mapping: Any, /) -> str:
    return _FORMATTER.vformat(template, (), mapping)


trust(_safe_format, _safe_format_map)


def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """`getattr` for model code: no private or denied names; the value passes `vet`."""
    _check_attr_name(name)
    if name in ("format", "format_map") and (obj is str or isinstance(obj, str)):
        fn: Callable[..., str] = _safe_format if name == "format" else _safe_format_map
        return fn if obj is str else functools.partial(fn, obj)
    try:
        value = getattr(obj, name)
    except AttributeError:
        if default:
            return default[0]
        raise
    if isinstance(value, types.ModuleType):
        return proxy_for(value)
    return vet(value)


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except Exception:
        return False
    return True


def guarded_getitem(obj: Any, key: Any) -> Any:
    return vet(obj[key])


class _ItemWriter:
    """What `_write_` hands back for objects whose attributes model code may not set:
    item assignment passes through (numpy arrays, deques, ...), attributes do not."""

    __slots__ = ("_ob",)
    _ob: Any

    def __init__(self, ob: Any) -> None:
        object.__setattr__(self, "_ob", ob)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ob[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._ob[key]

    def _what(self) -> str:
        name = type(self._ob).__name__
        return "modules" if name == "ModuleProxy" else f"{name} objects"

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"cannot set attributes of {self._what()} in the sandbox")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"cannot delete attributes of {self._what()} in the sandbox")


def guarded_write(ob: Any) -> Any:
    """`_write_`: full_write_guard's rule, widened for model-defined classes and
    item assignment on containers."""
    if type(ob) in (dict, list):
        return ob
    if type(ob) in _model_classes or (isinstance(ob, type) and ob in _model_classes):
        return ob
    return _ItemWriter(ob)


def sandbox_metaclass(name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
    """`__metaclass__` for `class` statements: builds the class and records it as
    the model's own, so `self.x = ...` works on its instances."""
    for base in bases:
        if not isinstance(base, type):
            raise TypeError("class bases must be classes")
    cls = type(name, bases, namespace)
    _model_classes.add(cls)
    return cls


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "|=": operator.ior,
    "^=": operator.ixor, "&=": operator.iand, "@=": operator.imatmul,
}
# our own AugAssign rewrite passes the ast operator's class name
_INPLACE.update({
    "Add": operator.iadd, "Sub": operator.isub, "Mult": operator.imul,
    "Div": operator.itruediv, "FloorDiv": operator.ifloordiv, "Mod": operator.imod,
    "Pow": operator.ipow, "LShift": operator.ilshift, "RShift": operator.irshift,
    "BitOr": operator.ior, "BitXor": operator.ixor, "BitAnd": operator.iand,
    "MatMult": operator.imatmul,
})


def inplacevar(op: str, x: Any, y: Any) -> Any:
    return _INPLACE[op](x, y)


def vetting_decorator(decorator: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`_decorate_`: apply `decorator`, then `vet` what it returned."""

    def apply(target: Any) -> Any:
        return vet(decorator(target))

    return apply


def apply_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class PrintCollector:
    """One snippet's printed text, capped at `limit` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        room = self.limit - self.size
        if room <= 0:
            self.dropped += len(text)
            return
        if len(text) > room:
            self.dropped += len(text) - room
            text = text[:room]
        self.parts.append(text)
        self.size += len(text)

    def text(self) -> str:
        return "".join(self.parts)

    # RestrictedPython calls `_print_(_getattr_)` once per scope, then
    # `_print._call_print(...)` per print and `_print()` for `printed`.
    def __call__(self) -> str:
        return self.text()

    def _call_print(
        self, *objects: Any, sep: str | None = " ", end: str | None = "\n",
        file: Any = None, flush: bool = False,
    ) -> None:
        if file is not None:
            raise TypeError("print(file=...) is not available in the sandbox")
        if sep is not None and not isinstance(sep, str):
            raise TypeError("sep must be None or a string")
        if end is not None and not isinstance(end, str):
            raise TypeError("end must be None or a string")
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        self.write(sep.join(str(o) for o in objects) + end)
