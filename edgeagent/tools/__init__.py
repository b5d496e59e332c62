"""Tools the agent's model code can use.

`CodeSandbox` is the Python tool: model code runs under RestrictedPython in a
resource-limited worker process (see `edgeagent.tools.sandbox`). `web_search`
itself lives in `edgeagent.wiki`; the sandbox only carries its calls from the
worker to the host callable you pass in `tools=`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeagent.tools.sandbox import (
        CodeSandbox,
        ExecResult,
        format_error,
        format_observation,
        render_turns,
    )

__all__ = ["CodeSandbox", "ExecResult", "format_error", "format_observation", "render_turns"]


def __getattr__(name: str) -> Any:
    # Lazy: the sandbox worker imports this package and must start fast.
    if name in __all__:
        from edgeagent.tools import sandbox

        return getattr(sandbox, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
