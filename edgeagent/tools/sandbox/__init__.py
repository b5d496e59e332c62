"""The code tool: model-written Python in a resource-limited worker process.

    with CodeSandbox(tools={"web_search": search}, timeout_s=10) as box:
        r = box.run("import math\\nx = math.comb(10, 3)\\nprint(x)\\nx")
        r.stdout, r.last_value_repr, r.error        # "120\\n", "120", None
        render_turns(r, step=1)                      # the paper's observation turn

Layers. Two independent ones, each assuming the other is broken.

- The OS layer (`confine`, `landlock`, `seccomp`, `limits`): a worker
  subprocess per session (own process group, scrubbed env, temp cwd, stdin
  on /dev/null, RLIMIT_AS/CPU/FSIZE=0/CORE=0/NOFILE/NPROC) that, before any
  model code, enters a network namespace, sets no_new_privs, and confines
  itself with Landlock (reads only where Python lives, writes only in its
  temp dir, no exec, no TCP, signals scoped) and seccomp (no exec, sockets,
  ptrace, namespaces, ...). It is killed as a group when a call overruns
  `timeout_s + kill_grace_s`, and restarted lazily; the killed call's error
  says plainly that variables were lost. Each layer is used where the kernel
  has it; `protections()` says which are active here and why others are not.
- The Python layer (`policy`, `objects`, `names`): RestrictedPython with
  guarded attribute/item/write/iteration/print, an import allowlist (math,
  re, itertools, collections, fractions, statistics, datetime, functools,
  time's clocks, numpy, sympy) handing out read-only module proxies, no
  open/eval/exec/compile/__import__/globals/vars, and a provenance check on
  every value model code obtains: only plain values and functions, classes
  and instances defined in allowed modules get through.

A soft limit at `timeout_s` interrupts model code inside the worker first,
which keeps the state.

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

Not covered: GPU or device access policies; a kernel without Landlock or
seccomp leaves the rlimits and the Python layer (`protections()` says so).
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

__all__ = [
    "CodeSandbox",
    "ExecResult",
    "format_error",
    "format_observation",
    "protections",
    "python_layer_only",
    "render_turns",
]
_PROTECTIONS: list[dict[str, Any]] = []


def protections(refresh: bool = False, box: CodeSandbox | None = None) -> dict[str, Any]:
    """Which sandbox layers are active on this machine, and why the others are not.

    Reads them from `box` when given (a sandbox already started), else starts one
    worker (about 0.1 s); cached for the process. Returns
    `{"layers": {name: {"active": bool, "detail": str}}, "confine_ms": float,
    "worker_ready_ms": float}`. Layer names: namespaces, uid (only when
    running as root), rlimits, no_new_privs, landlock, seccomp, python.
    `detail` says what is enforced, or why a layer is inactive. Raises
    `UserError` when no worker can start at all."""
    if _PROTECTIONS and not refresh:
        return _PROTECTIONS[0]
    if box is not None:
        report = dict(box.protections)
    else:
        from edgeagent.tools.sandbox.host import CodeSandbox

        with CodeSandbox() as started:
            report = dict(started.protections)
    layers = dict(report.get("layers") or {})
    layers["python"] = {"active": True,
                        "detail": "RestrictedPython, import allowlist, provenance checks"}
    report["layers"] = layers
    _PROTECTIONS[:] = [report]
    return report


def python_layer_only(report: dict[str, Any] | None = None) -> bool:
    """True when neither Landlock nor seccomp is active: the app should warn."""
    layers = (report or protections()).get("layers", {})
    return not any(layers.get(n, {}).get("active") for n in ("landlock", "seccomp"))


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
