"""The OS layer's mechanics: the seccomp program, threads under the filter, the
layer report, and the sandbox package's import graph (no circles)."""

from __future__ import annotations

import ast
import platform
import struct
from pathlib import Path

import pytest

from edgeagent.tools.sandbox import protections, python_layer_only
from edgeagent.tools.sandbox.breach import UnguardedSandbox

PACKAGE = Path(__file__).resolve().parents[1] / "edgeagent" / "tools" / "sandbox"
AUDIT_ARCH_X86_64 = 0xC000003E


def _layer_active(name: str) -> bool:
    return bool(protections()["layers"].get(name, {}).get("active"))


def test_sandbox_modules_import_each_other_without_circles() -> None:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("edgeagent.tools.sandbox."):
                    deps.add(node.module.rsplit(".", 1)[1])
                elif node.module == "edgeagent.tools.sandbox":
                    deps.update(alias.name for alias in node.names)
        graph[path.stem] = deps & {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import circle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for dep in graph.get(name, ()):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert {"names", "objects", "policy", "modules", "session", "worker"} <= done


@pytest.mark.skipif(platform.machine() != "x86_64", reason="checks the x86_64 program")
def test_seccomp_program_checks_the_architecture_and_refuses_x32() -> None:
    from edgeagent.tools.sandbox import seccomp

    try:
        program = seccomp.export_bpf(host_pid=4242, keeper_pid=4343)
    except seccomp.SeccompError as exc:
        pytest.skip(f"libseccomp unavailable: {exc}")
    insns = [struct.unpack("<HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    constants = [k for _code, _jt, _jf, k in insns]
    # first: load seccomp_data.arch (offset 4) and compare with x86_64
    assert insns[0][3] == 4 and insns[1][3] == AUDIT_ARCH_X86_64
    assert 0x40000000 in constants  # the x32 syscall bit is checked
    assert 4242 in constants and 4343 in constants  # signals to host and keeper refused


def test_threads_start_under_the_filter_and_clone3_is_enosys() -> None:
    if not _layer_active("seccomp"):
        pytest.skip(f"seccomp inactive: {protections()['layers'].get('seccomp')}")
    code = (
        "import ctypes, errno, threading\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(1))\n"
        "t.start()\nt.join()\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.syscall(435, None, 0)\n"  # clone3
        "(out, rc, errno.errorcode[ctypes.get_errno()])"
    )
    with UnguardedSandbox(timeout_s=10.0) as box:
        result = box.run(code)
    assert result.error is None, result.error
    assert result.last_value_repr == "([1], -1, 'ENOSYS')"


def test_numpy_and_sympy_work_inside_every_layer() -> None:
    with UnguardedSandbox(timeout_s=20.0) as box:
        result = box.run(
            "import numpy as np, sympy\n"
            "x = sympy.Symbol('x')\n"
            "(round(float(np.linalg.det(np.array([[2.0, 1.0], [1.0, 3.0]]))), 6), "
            "sympy.solve(x**2 - 9, x))"
        )
    assert result.error is None, result.error
    assert result.last_value_repr == "(5.0, [-3, 3])"


def test_protections_report_every_layer_with_a_reason() -> None:
    report = protections()
    layers = report["layers"]
    for name in ("namespaces", "rlimits", "no_new_privs", "landlock", "seccomp", "python"):
        assert isinstance(layers[name]["active"], bool)
        assert layers[name]["detail"]
    assert report["confine_ms"] >= 0
    assert python_layer_only(report) is not (
        layers["landlock"]["active"] or layers["seccomp"]["active"]
    )
    only_python = {"layers": {"landlock": {"active": False, "detail": "no Landlock"},
                              "seccomp": {"active": False, "detail": "no libseccomp"}}}
    assert python_layer_only(only_python)


def test_worker_confinement_is_visible_from_outside() -> None:
    """What the kernel says about a running worker, read from /proc by the host."""
    import os

    from edgeagent.tools import CodeSandbox

    with CodeSandbox() as box:
        box.run("1")
        pid = box.worker_pid
        assert pid is not None
        layers = box.protections["layers"]
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        limits = Path(f"/proc/{pid}/limits").read_text()
        net = os.readlink(f"/proc/{pid}/ns/net")
    assert status["NoNewPrivs"].strip() == "1"
    if layers["seccomp"]["active"]:
        assert status["Seccomp"].strip() == "2"  # filter mode
    if layers["namespaces"]["active"]:
        assert net != os.readlink("/proc/self/ns/net")
    if layers["rlimits"]["active"] and "NPROC=" in layers["rlimits"]["detail"]:
        line = next(x for x in limits.splitlines() if x.startswith("Max processes"))
        assert line.split()[2] != "unlimited"
    if os.geteuid() == 0 and layers.get("uid", {}).get("active"):
        assert status["Uid"].split()[0] != "0"
        assert int(status["CapEff"], 16) == 1 << 2  # CAP_DAC_READ_SEARCH only


def test_preloaded_numpy_loads_after_confinement_on_one_thread() -> None:
    from edgeagent.tools import CodeSandbox

    with CodeSandbox(preload=["numpy", "sympy"], timeout_s=10.0) as box:
        result = box.run("import numpy as np\nfloat(np.ones(3).sum())")
        assert box.worker_pid is not None
        threads = next(
            line.split()[1]
            for line in Path(f"/proc/{box.worker_pid}/status").read_text().splitlines()
            if line.startswith("Threads:")
        )
    assert result.error is None and result.last_value_repr == "3.0"
    assert threads == "1"
