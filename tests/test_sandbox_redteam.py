"""Red team: the classes of escape a review found in the Python layer, one test each.

Re-exported importers (a helper in an allowed sympy module that imports any
module by name), test runners, real types from one-argument `type()`,
subpackage aliases (`numpy.ma.core.np.<x>` reaching numpy subpackages past
the allowlist), raw-memory interfaces. Each is checked from outside the
sandbox (a canary file that must not appear) and the session must keep
working. Plus the benign program that the import guard used to break
(numpy's own lazy imports).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.tools import CodeSandbox


@pytest.fixture(scope="module")
def box() -> Iterator[CodeSandbox]:
    with CodeSandbox(timeout_s=10.0) as sandbox:
        yield sandbox


ATTACKS: dict[str, str] = {
    # re-exported importers: importlib.import_module re-exported by sympy.core.cache
    "reexported_import_module": "from sympy.core import cache\n"
                                "cache.import_module('subprocess').run(['touch', '{canary}'])",
    "reexported_import_module_getattr": "import sympy.core.cache as c\n"
                                        "f = getattr(c, 'import_' + 'module')\nf('os')",
    # ... and a lazy importer built from an allowed function
    "lazy_function_importer": "from sympy.core.cache import lazy_function\n"
                              "lazy_function('subprocess', 'run')(['touch', '{canary}'])",
    "lazy_function_held": "import sympy.core.cache as c\nc.lazy_function('os', 'system')",
    "decorator_returns_lazy_importer": "import functools\nimport sympy.core.cache as c\n"
                                       "@functools.partial(c.lazy_function, 'os')\n"
                                       "def system():\n    pass",
    # test runners
    "sympy_test_runner": "import sympy\nsympy.test",
    "sympy_doctest_runner": "import sympy\nsympy.doctest",
    "numpy_test_runner": "import numpy as np\nnp.ma.core.np.test",
    # real types from one-argument type()
    "type_of_function": "type(lambda: 0)",
    "type_of_type": "T = type(type)\nT",
    "type_of_builtin_function": "type(len)",
    "type_of_generator": "type(x for x in [1])",
    # subpackage aliases
    "alias_numpy_core_shim": "import numpy as np\nnp.ma.core.np.core.multiarray",
    "alias_numpy_rec": "import numpy as np\nnp.ma.core.np.rec",
    "alias_numpy_matrixlib": "import numpy as np\nnp.ma.core.np.matrixlib",
    "alias_deep": "import numpy as np\nnp.ma.core.np.ma.core.np.typing",
    # raw-memory interfaces
    "ndarray_data_memoryview": "import numpy as np\nnp.zeros(4).data",
    "memoryview_via_item": "import numpy as np\n[np.zeros(2).data][0]",
    "alias_ctypes_helpers": "import numpy as np\nnp.ma.core.np.core.multiarray.array",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS), ids=str)
def test_redteam_attack_is_refused(box: CodeSandbox, tmp_path: Path, attack: str) -> None:
    canary = tmp_path / "canary"
    result = box.run(ATTACKS[attack].replace("{canary}", str(canary)))
    assert result.error is not None, f"{attack} ran: {result}"
    assert not result.restarted
    assert not canary.exists()
    assert box.run("1 + 1").last_value_repr == "2"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import numpy as np\nnp.array([[1.0, 2.0], [3.0, 4.0]]).mean()", "np.float64(2.5)"),
        ("import numpy as np\nfloat(np.array([[1.0, 2.0], [3.0, 4.0]]).std())",
         "1.118033988749895"),
        ("import numpy as np\nnp.linalg.solve(np.array([[2.0, 0], [0, 4.0]]), [2, 4]).tolist()",
         "[1.0, 1.0]"),
        ("import numpy as np\nnp.r_[1, 2, 3].tolist()", "[1, 2, 3]"),
        ("import sympy\nx = sympy.Symbol('x')\nsympy.simplify(sympy.sin(x)**2 + sympy.cos(x)**2)",
         "1"),
        ("import sympy\nsympy.Rational(1, 3) + sympy.Rational(1, 6)", "1/2"),
        ("import sympy\nx = sympy.Symbol('x')\nsympy.latex(x**2)", "'x^{2}'"),
        ("import sympy\nsympy.flatten([[1, 2], [3]])", "[1, 2, 3]"),
        ("import numpy as np\nrng = np.random.default_rng(0)\nrng.integers(0, 10, size=3).shape",
         "(3,)"),
        ("import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n"
         "    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(30)", "832040"),
        ("from collections import namedtuple\nP = namedtuple('P', 'x y')\nP(1, 2).y", "2"),
        ("import itertools\n[(k, len(list(g))) for k, g in itertools.groupby('aabbbc')]",
         "[('a', 2), ('b', 3), ('c', 1)]"),
        ("import sympy\nsympy.Matrix([[2, 0], [0, 3]]).eigenvals()", "{2: 1, 3: 1}"),
        ("type(3) is int and type('a') is str", "True"),
        ("class P:\n    pass\ntype(P()) is P", "True"),
    ],
    ids=["ndarray-mean", "ndarray-std", "linalg-solve", "r_", "simplify", "rational", "latex",
         "flatten", "default-rng", "lru-cache", "namedtuple", "groupby", "eigenvals",
         "type-plain", "type-own-class"],
)
def test_benign_code_that_the_guard_used_to_break(
    box: CodeSandbox, code: str, expected: str
) -> None:
    result = box.run(code)
    assert result.error is None, result.error
    assert result.last_value_repr == expected
