"""Attacks on the code tool, each checked from OUTSIDE the sandbox: a canary file
that must not appear, a secret (in a file and in the host's environment) that
must never come back in any output, and a session that still works afterwards.
Plus the process wall itself (env, cwd, limits, stdin) read from /proc, and the
resource attacks with their wall-clock bounds."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.tools import CodeSandbox, ExecResult

SECRET = "s3cr3t-7f1c2b9e"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("attack")
    secret_file = root / "secret.txt"
    secret_file.write_text(SECRET)
    old = os.environ.get("EDGEAGENT_TEST_SECRET")
    os.environ["EDGEAGENT_TEST_SECRET"] = SECRET
    yield {"canary": str(root / "canary"), "secret": str(secret_file)}
    if old is None:
        os.environ.pop("EDGEAGENT_TEST_SECRET", None)
    else:
        os.environ["EDGEAGENT_TEST_SECRET"] = old


@pytest.fixture(scope="module")
def box(planted: dict[str, str]) -> Iterator[CodeSandbox]:
    with CodeSandbox(timeout_s=5.0) as sandbox:
        yield sandbox


def leaked(result: ExecResult) -> bool:
    text = f"{result.stdout}{result.error}{result.last_value_repr}{result.final_answer}"
    return SECRET in text


ATTACKS: dict[str, str] = {
    # attribute walks
    "subclasses": "().__class__.__bases__[0].__subclasses__()",
    "subclasses_getattr": "getattr(getattr((), '__cl' + 'ass__'), '__subclasses__')()",
    "mro_method": "[c for c in int.mro()[-1].mro()]",
    "globals_attr": "def f():\n    pass\nf.__globals__",
    "globals_getattr": "def f():\n    pass\ngetattr(f, '__glo' + 'bals__')['__builtins__']",
    "builtins_name": "__builtins__['open']('{secret}').read()",
    "builtins_via_tool": "getattr(final_answer, '__self__')",
    "closure_of_tool": "getattr(web_search, '__closure__')",
    "module_of_builtin": "import time\ngetattr(time.sleep, '__self__')",
    "traceback_attr": "try:\n    1/0\nexcept Exception as e:\n    t = e.__traceback__",
    "traceback_getattr": "try:\n    1/0\nexcept Exception as e:\n"
                         "    t = getattr(e, '__tra' + 'ceback__').tb_frame.f_globals",
    "gi_frame": "g = (x for x in [1])\ng.gi_frame.f_globals",
    "gi_frame_getattr": "g = (x for x in [1])\ngetattr(g, 'gi_fr' + 'ame')",
    "gi_code": "def gen():\n    yield 1\ngetattr(gen(), 'gi_code')",
    "reduce_getattr": "import functools\nfunctools.reduce(getattr, ['__class__', '__base__'], 1)",
    "dir_walk": "[getattr(1, n) for n in ['__class__']]",
    # format strings
    "format_attr": "'{0.__class__.__base__.__subclasses__}'.format(1)",
    "format_globals": "def f():\n    pass\n'{0.__globals__[__builtins__]}'.format(f)",
    "format_type_method": "str.format('{0.__class__}', 1)",
    "format_map": "'{x.__class__}'.format_map({'x': 1})",
    "format_via_getattr": "getattr('{0.__class__}', 'format')(1)",
    "format_vectorize": "import numpy as np\nnp.vectorize('{0.__class__}'.format)(1)",
    "string_formatter": "import string\nstring.Formatter().format('{0.__class__}', 1)",
    # syntax-level tricks
    "except_star": "try:\n    raise ValueError()\nexcept* ValueError as e:\n    pass",
    "posonly_guard_shadow": "def f(_getattr_, /):\n    return _getattr_\nf(1)",
    "lambda_guard_shadow": "(lambda _write_=None: 1)()",
    "type_three_args": "type('A', (), {'x': 1})",
    "metaclass_kw": "class A(metaclass=list):\n    pass",
    "eval": "eval('1')",
    "exec": "exec('x = 1')",
    "compile": "compile('1', 'x', 'eval')",
    "globals": "globals()",
    "vars": "vars()",
    "import_dunder": "__import__('os')",
    # modules
    "ctypes": "import ctypes",
    "numpy_ctypeslib": "import numpy as np\nnp.ctypeslib",
    "ndarray_ctypes": "import numpy as np\nnp.zeros(1).ctypes",
    "importlib": "import importlib",
    "private_submodule": "import random\nrandom._os",
    "private_numpy": "import numpy\nnumpy._core",
    "module_attr_module": "import fractions\nfractions.sys.modules",
    "statistics_sys": "import statistics\ngetattr(statistics, 'sys')",
    "sys_modules": "import sys\nsys.modules['os']",
    "from_import_private": "from collections import _sys",
    "relative_import": "from . import x",
    "numpy_lib": "import numpy as np\nnp.lib.stride_tricks",
    "from_numpy_lib": "from numpy.lib import format",
    # files
    "open_read": "open('{secret}').read()",
    "open_write": "open('{canary}', 'w').write('x')",
    "numpy_loadtxt": "import numpy as np\nnp.loadtxt('{secret}', dtype=str)",
    "numpy_fromfile": "import numpy as np\nnp.fromfile('{secret}', dtype='uint8')",
    "numpy_genfromtxt": "import numpy as np\nnp.genfromtxt('{secret}', dtype=str)",
    "numpy_tofile": "import numpy as np\nnp.zeros(3).tofile('{canary}')",
    "numpy_save": "import numpy as np\nnp.save('{canary}', np.zeros(3))",
    "numpy_memmap": "import numpy as np\nnp.memmap('{canary}', mode='w+', shape=(1,))",
    "numpy_ma_dump": "import numpy as np\nnp.ma.dump(np.ma.zeros(1), '{canary}')",
    "sympy_sympify_import":
        "import sympy\nsympy.sympify(\"__import__('os').system('touch {canary}')\")",
    "sympy_sympify_open": "import sympy\nsympy.sympify(\"open('{secret}').read()\")",
    "sympy_parse_expr": "import sympy\nsympy.parse_expr(\"open('{secret}').read()\")",
    "sympy_solve_string":
        "import sympy\nsympy.solve(\"__import__('os').system('touch {canary}')\")",
    "sympy_lambdify": "import sympy\nsympy.lambdify([], 1)",
    "sympy_utilities": "from sympy.utilities.lambdify import lambdify",
    "sympy_parsing": "import sympy.parsing.sympy_parser",
    "sympy_var": "import sympy\nsympy.var('_getattr_')",
    # processes, sockets, environment
    "socket": "import socket\nsocket.socket()",
    "subprocess": "import subprocess\nsubprocess.run(['touch', '{canary}'])",
    "os_system": "import os\nos.system('touch {canary}')",
    "os_fork": "import os\nos.fork()",
    "os_environ": "import os\nos.environ['EDGEAGENT_TEST_SECRET']",
    "posix": "import posix\nposix.environ",
    "builtins_module": "import builtins\nbuiltins.open('{secret}')",
    "pathlib": "import pathlib\npathlib.Path('{secret}').read_text()",
    "io": "import io\nio.open('{secret}').read()",
    "time_attr_outside_allowlist": "import time\ntime.get_clock_info('monotonic')",
    # writes to modules and classes
    "module_setattr": "import math\nmath.pi = 3",
    "module_delattr": "import math\ndel math.pi",
    "class_setattr": "from collections import Counter\nCounter.most_common = None",
    "builtin_setattr": "int.real = 1",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS), ids=str)
def test_attack_fails(box: CodeSandbox, planted: dict[str, str], attack: str) -> None:
    code = ATTACKS[attack].replace("{canary}", planted["canary"]).replace(
        "{secret}", planted["secret"]
    )
    result = box.run(code)
    assert result.error is not None, f"{attack} ran: {result}"
    assert not result.restarted
    assert not leaked(result)
    assert not os.path.exists(planted["canary"])
    assert box.run("1 + 1").last_value_repr == "2"


def test_poisoning_a_module_does_not_reach_later_calls_or_sessions() -> None:
    with CodeSandbox() as a:
        assert a.run("import math\nmath.pi = 3").error is not None
        assert a.run("import numpy as np\nd = np.sctypeDict\nd['float64'] = int").error is None
        assert a.run("import numpy as np\nnp.sctypeDict['float64'] is int").last_value_repr == (
            "False"
        )
        assert a.run("math.pi").last_value_repr == "3.141592653589793"
        with CodeSandbox() as b:
            assert b.run("import math\nmath.pi").last_value_repr == "3.141592653589793"
            assert b.worker_pid != a.worker_pid


def test_worker_process_is_walled(box: CodeSandbox) -> None:
    box.run("1")
    pid = box.worker_pid
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not any(SECRET.encode() in item for item in environ)
    assert not any(item.startswith(b"EDGEAGENT_HOME=") for item in environ)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    assert "edgeagent-sandbox-" in cwd and cwd != os.getcwd()
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.getpgid(pid) != os.getpgid(0)
    limits = Path(f"/proc/{pid}/limits").read_text()

    def soft(name: str) -> str:
        line = next(line for line in limits.splitlines() if line.startswith(name))
        return line[len(name):].split()[0]

    assert soft("Max file size") == "0"
    assert int(soft("Max open files")) <= 64
    assert int(soft("Max address space")) <= 1024 * 1024 * 1024
    assert soft("Max cpu time") != "unlimited"
    assert soft("Max core file size") == "0"
    # the worker holds only its pipe ends, stdio and nothing else
    assert len(os.listdir(f"/proc/{pid}/fd")) <= 8


# ---------------------------------------------------------------- resources


def host_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture()
def quick() -> Iterator[CodeSandbox]:
    with CodeSandbox(timeout_s=1.0, kill_grace_s=0.5) as sandbox:
        yield sandbox


@pytest.mark.parametrize(
    "code",
    ["while True: pass", "import time\ntime.sleep(1000)", "10**10**10",
     "x = [1]\nfor i in range(200):\n    x = x + x"],
    ids=["busy-loop", "sleep", "power", "doubling"],
)
def test_runaway_code_stops_within_timeout_and_session_survives(
    quick: CodeSandbox, code: str
) -> None:
    quick.run("kept = 'yes'")
    started = time.monotonic()
    result = quick.run(code)
    elapsed = time.monotonic() - started
    assert result.error is not None
    assert elapsed < quick.timeout_s + 1.0
    after = quick.run("kept")
    if result.restarted:  # killed from outside: said so, and the state is gone
        assert "lost" in result.error
        assert after.error is not None and "NameError" in after.error
    else:  # interrupted inside: the state is kept
        assert after.last_value_repr == "'yes'"
    assert quick.run("6 * 7").last_value_repr == "42"


def test_swallowed_timeout_is_killed_and_says_variables_were_lost(quick: CodeSandbox) -> None:
    quick.run("kept = 1")
    started = time.monotonic()
    result = quick.run(
        "while True:\n    try:\n        sum(range(10**6))\n    except:\n        pass"
    )
    assert time.monotonic() - started < quick.timeout_s + quick.kill_grace_s + 1.0
    assert result.timed_out and result.restarted
    assert result.error is not None and "variables" in result.error and "lost" in result.error
    assert "NameError" in (quick.run("kept").error or "")
    assert quick.run("2 * 21").last_value_repr == "42"


@pytest.mark.parametrize(
    "code", ["bytearray(10**10)", "'a' * 10**10", "[0] * 10**10", "x = [list(range(10**6))] "
             "* 1\ny = [x[0][:] for _ in range(1000)]"],
    ids=["bytearray", "str", "list", "many-lists"],
)
def test_memory_bombs_fail_without_growing_the_host(quick: CodeSandbox, code: str) -> None:
    before = host_rss_mb()
    started = time.monotonic()
    result = quick.run(code)
    assert result.error is not None
    assert time.monotonic() - started < quick.timeout_s + 1.0
    assert host_rss_mb() - before < 50
    assert quick.run("1 + 1").last_value_repr == "2"


def test_print_bomb_is_truncated_and_bounded(quick: CodeSandbox) -> None:
    before = host_rss_mb()
    result = quick.run("print('x' * 50_000_000)")
    assert result.error is None and result.truncated
    assert len(result.stdout) <= quick.max_output_chars + 200
    assert "output truncated" in result.stdout
    loop = quick.run("while True:\n    print('spam' * 1000)")
    assert loop.error is not None and len(loop.stdout) <= quick.max_output_chars + 200
    big_repr = quick.run("list(range(10**6))")
    assert len(big_repr.last_value_repr) <= quick.max_output_chars + 100
    assert host_rss_mb() - before < 50


def test_deeply_nested_code_does_not_crash_the_host(quick: CodeSandbox) -> None:
    result = quick.run("x = " + "(" * 100_000 + ")" * 100_000)
    assert result.error is not None
    recursion = quick.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert recursion.error is not None and "RecursionError" in recursion.error
    assert quick.run("3").last_value_repr == "3"
