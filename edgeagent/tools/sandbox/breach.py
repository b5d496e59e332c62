"""Test entry point: a confined worker WITHOUT the Python layer ("assume breach").

`UnguardedSandbox` runs snippets as plain Python with the real builtins
(`import os`, `open`, `ctypes` all work) inside a worker that has every OS
layer (`confine`), so tests can show what the OS layer stops on its own.
The CLI never builds one and model code cannot reach it: the switch is a
constructor of this module, read by the worker once at start, before any
snippet runs. Never use it for model code.

Not covered: anything but tests.
"""

from __future__ import annotations

from typing import Any

from edgeagent.tools.sandbox.host import CodeSandbox


class UnguardedSandbox(CodeSandbox):
    """A `CodeSandbox` whose worker skips the Python layer (tests only)."""

    def __init__(self, *args: Any, os_layer: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._layers = {"python_layer": False, "os_layer": os_layer}
