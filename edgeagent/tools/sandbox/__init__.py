"""The code tool: model-written Python in a resource-limited worker process.

    with CodeSandbox(tools={"web_search": search}, timeout_s=10) as box:
        r = box.run("import math\\nx = math.comb(10, 3)\\nprint(x)\\nx")
        r.stdout, r.last_value_repr, r.error        # "120\\n", "120", None
        render_turns(r, step=1)                      # the paper's observation turn

Layers. The process is the wall: a worker subprocess per session (own process
group, scrubbed env, temp cwd, stdin on /dev/null, RLIMIT_AS/CPU/FSIZE=0/NOFILE,
see `limits`), killed as a group when a call overruns `timeout_s + kill_grace_s`,
and restarted lazily; the killed call's error says plainly that variables were
lost. RestrictedPython is the second line (`policy`, `modules`): guarded
attribute/item/write/iteration/print, an import allowlist (math, re, itertools,
collections, fractions, statistics, datetime, functools, time's clocks, numpy,
sympy) handing out read-only module proxies, no open/eval/exec/compile/
__import__/globals/vars. A soft limit at `timeout_s` interrupts model code
inside the worker first, which keeps the state.

State persists between `run` calls (variables, imports, functions).

Candidates (self-consistent action generation):

    results = box.run_candidates([code_a, code_b, ...])   # K forks of the state
    box.commit(i)      # candidate i's state becomes the session's; -> bool
    box.discard()      # or: keep the state from before the candidates

Each snippet runs in a copy-on-write fork of the warm worker, in parallel, under
one shared time limit. Nothing a candidate does reaches the session until it
is committed: committing hands the host channel to that fork (no re-run); the
other forks are killed. `commit(i)` of a candidate that was killed for time
keeps the old state and returns False. Any `run` or `run_candidates` while
candidates are pending discards them first.

Host tools: each `tools={"name": fn}` callable becomes `name(arg)` in model
code; the call travels as one JSON frame to the host, which runs `fn(str)` and
sends back its string. Model code never holds a file or socket. Without a
`web_search` tool, `web_search()` returns a message saying no index is loaded.
`final_answer(x)` ends the snippet: `is_final=True`, `final_answer=x` (x when
JSON-able, numpy converted, else repr(x)).

Not covered: syscall filtering (seccomp/landlock) and network namespaces: code
that escaped RestrictedPython could read the user's files or open sockets, but
not write files (FSIZE 0), exceed memory/CPU/time, or see the host's env.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeagent.tools.sandbox.host import CodeSandbox
    from edgeagent.tools.sandbox.result import (
        ExecResult,
        format_error,
        format_observation,
        render_turns,
    )

__all__ = ["CodeSandbox", "ExecResult", "format_error", "format_observation", "render_turns"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the worker process (which imports `.worker` from this
    # package) does not pay for the host side's imports.
    if name == "CodeSandbox":
        from edgeagent.tools.sandbox.host import CodeSandbox

        return CodeSandbox
    if name in __all__:
        from edgeagent.tools.sandbox import result

        return getattr(result, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
