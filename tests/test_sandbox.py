"""CodeSandbox behaviour: benign programs, state, observations, tools, candidates,
restarts and configuration errors. Security and resource attacks are in
test_sandbox_security.py."""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.errors import UserError
from edgeagent.tools import CodeSandbox, ExecResult, render_turns


@pytest.fixture(scope="module")
def box() -> Iterator[CodeSandbox]:
    with CodeSandbox(timeout_s=5.0) as sandbox:
        yield sandbox


def process_gone(pid: int, wait_s: float = 3.0) -> bool:
    """True once `pid` no longer runs (gone, or a zombie waiting for init)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def ok(box: CodeSandbox, code: str) -> ExecResult:
    result = box.run(code)
    assert result.error is None, result.error
    return result


# ---------------------------------------------------------------- benign programs


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sympy\nx = sympy.symbols('x')\nsorted(sympy.solve(x**2 - 4, x))", "[-2, 2]"),
        ("import sympy\nsympy.sympify('x**2 + 2*x').subs('x', 1)", "3"),
        ("from sympy.abc import y\nimport sympy\nsympy.expand((y + 1)**2)", "y**2 + 2*y + 1"),
        ("import itertools\nlen(list(itertools.permutations(range(4))))", "24"),
        ("from itertools import product, permutations, combinations\n"
         "(len(list(product('ab', repeat=3))), len(list(combinations(range(5), 2))), "
         "next(permutations('ab')))", "(8, 10, ('a', 'b'))"),
        ("[(i, j) for i in range(2) for j in range(2) if i != j]", "[(0, 1), (1, 0)]"),
        ("import numpy as np\nfloat(np.mean([1, 2, 3, 4]))", "2.5"),
        ("import numpy as np\na = np.zeros(4)\na[1] = 2\na[1:3] += 1\na.tolist()",
         "[0.0, 3.0, 1.0, 0.0]"),
        ("from fractions import Fraction\nFraction(1, 3) + Fraction(1, 6)", "Fraction(1, 2)"),
        ("import math\nmath.comb(10, 3)", "120"),
        ("import statistics\nstatistics.median([3, 1, 2])", "2"),
        ("import datetime\n(datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days", "29"),
        ("import re\nre.findall(r'\\d+', 'a1b22c333')", "['1', '22', '333']"),
        ("import functools\nfunctools.reduce(lambda a, b: a * b, range(1, 6))", "120"),
        ("from collections import Counter, defaultdict\nc = Counter('abca')\n"
         "d = defaultdict(int)\nd['k'] += 2\n(c.most_common(1), dict(d))",
         "([('a', 2)], {'k': 2})"),
        ("counts = {}\nfor w in 'a b a'.split():\n    counts[w] = counts.get(w, 0) + 1\n"
         "counts['a'] += 10\ncounts", "{'a': 12, 'b': 1}"),
        ("class P:\n    def __init__(self, a):\n        self.a = a\n    def double(self):\n"
         "        self.a *= 2\n        return self.a\nP(3).double()", "6"),
        ("'{:.2f} {} {name}'.format(3.14159, [1], name='x')", "'3.14 [1] x'"),
        ("v = 7\nf'{v:03d}|{v!r}'", "'007|7'"),
        ("def gen(n):\n    yield from range(n)\nsum(gen(5))", "10"),
        ("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    r = str(e)\nr",
         "'division by zero'"),
        ("sorted(['bb', 'a', 'ccc'], key=lambda s: -len(s))", "['ccc', 'bb', 'a']"),
        ("a, (b, *c) = 1, (2, 3, 4)\n(a, b, c)", "(1, 2, [3, 4])"),
        ("import time\nisinstance(time.time(), float)", "True"),
    ],
    ids=lambda v: v.splitlines()[0][:40] if isinstance(v, str) else None,
)
def test_benign_programs(box: CodeSandbox, code: str, expected: str) -> None:
    assert ok(box, code).last_value_repr == expected


def test_state_persists_over_three_calls(box: CodeSandbox) -> None:
    ok(box, "import math\ndef area(r):\n    return math.pi * r ** 2")
    ok(box, "radii = [1, 2, 3]\ntotal = 0")
    result = ok(box, "for r in radii:\n    total += area(r)\nprint(round(total, 3))")
    assert result.stdout == "43.982\n"
    assert result.last_value_repr == "None"


def test_print_and_last_value_render_as_the_paper_observation(box: CodeSandbox) -> None:
    result = ok(box, "print('hello')\nx = 41\nx + 1")
    assert result.observation() == "Execution logs:\nhello\nLast output from code snippet:\n42"
    assert render_turns(result, 2) == [
        "Call id: call_2\nObservation:\nExecution logs:\nhello\nLast output from code snippet:\n42"
    ]


def test_error_turn_keeps_printed_output(box: CodeSandbox) -> None:
    result = box.run("print('before')\nundefined_name")
    assert result.error is not None and "NameError" in result.error
    assert "undefined_name" in result.error
    turns = render_turns(result, 3)
    assert turns[0] == "Call id: call_3\nObservation:\nExecution logs:\nbefore\n"
    assert turns[1].startswith("Call id: call_3\nError:\n")
    assert turns[1].endswith(
        "\nNow let's retry: take care not to repeat previous errors! If you have retried "
        "several times, try a completely different approach.\n"
    )


def test_syntax_error_is_an_observation(box: CodeSandbox) -> None:
    result = box.run("x = (1,")
    assert result.error is not None and "SyntaxError" in result.error
    assert ok(box, "1 + 1").last_value_repr == "2"


def test_final_answer_ends_the_snippet(box: CodeSandbox) -> None:
    result = ok(box, "print('a')\nfinal_answer({'n': 3, 'xs': [1.5]})\nprint('never')")
    assert result.is_final and result.final_answer == {"n": 3, "xs": [1.5]}
    assert result.stdout == "a\n"
    numpy_value = ok(box, "import numpy as np\nfinal_answer(np.int64(7))")
    assert numpy_value.final_answer == 7
    opaque = ok(box, "import sympy\nfinal_answer(sympy.Rational(1, 3))")
    assert opaque.final_answer == "1/3"


def test_web_search_without_index_says_so(box: CodeSandbox) -> None:
    result = ok(box, "web_search('Eiffel tower')")
    assert "no Wikipedia index" in result.last_value_repr


def test_host_tool_round_trip_and_failure() -> None:
    seen: list[str] = []

    def search(query: str) -> str:
        seen.append(query)
        if query == "boom":
            raise RuntimeError("index broken")
        return f"\nRetrieved documents:\n\n{query.upper()}"

    with CodeSandbox(tools={"web_search": search}, timeout_s=5) as box:
        result = ok(box, "r = web_search(query='paris')\nprint(r)")
        assert result.stdout == "\nRetrieved documents:\n\nPARIS\n"
        failed = box.run("web_search('boom')")
        assert failed.error is not None and "index broken" in failed.error
        caught = ok(
            box, "try:\n    web_search('boom')\nexcept Exception as e:\n    m = 'caught'\nm"
        )
        assert caught.last_value_repr == "'caught'"
    assert seen == ["paris", "boom", "boom"]


def test_tool_time_does_not_count_against_the_snippet() -> None:
    def slow(query: str) -> str:
        time.sleep(0.8)
        return "ok"

    with CodeSandbox(tools={"slow": slow}, timeout_s=1.0) as box:
        result = ok(box, "[slow('a'), slow('b')]")
        assert result.last_value_repr == "['ok', 'ok']"


# ---------------------------------------------------------------- candidates


def test_candidates_commit_keeps_only_the_chosen_state() -> None:
    with CodeSandbox(timeout_s=5) as box:
        ok(box, "x = 10\nlog = []")
        codes = [f"x += {i}\nlog.append({i})\nmarker_{i} = True\nprint('cand', {i})\nx"
                 for i in range(8)]
        results = box.run_candidates(codes)
        assert [r.last_value_repr for r in results] == [str(10 + i) for i in range(8)]
        assert [r.stdout for r in results] == [f"cand {i}\n" for i in range(8)]
        assert box.commit(5) is True
        after = ok(box, "(x, log)")
        assert after.last_value_repr == "(15, [5])"
        assert after.stdout == ""  # nothing printed by any candidate leaks
        for i in (0, 4, 6, 7):
            assert "NameError" in (box.run(f"marker_{i}").error or "")
        assert ok(box, "marker_5").last_value_repr == "True"


def test_candidates_discard_and_implicit_discard() -> None:
    with CodeSandbox(timeout_s=5) as box:
        ok(box, "x = 1")
        box.run_candidates(["x = 2", "x = 3"])
        box.discard()
        assert ok(box, "x").last_value_repr == "1"
        box.run_candidates(["x = 4"])
        assert ok(box, "x").last_value_repr == "1"  # run() drops pending candidates
        with pytest.raises(RuntimeError):
            box.commit(0)


SWALLOW_TIMEOUT = (
    "while True:\n    try:\n        sum(range(10**6))\n    except:\n        pass"
)


def test_candidates_failures_and_timeouts_leave_the_session_intact() -> None:
    with CodeSandbox(timeout_s=1.0, kill_grace_s=0.5) as box:
        ok(box, "keep = 'me'")
        started = time.monotonic()
        results = box.run_candidates(
            [SWALLOW_TIMEOUT, "1 / 0", "final_answer(42)", "import os", "keep = 'b'",
             "keep = 'slow'\nwhile True: pass"]
        )
        assert time.monotonic() - started < 1.0 + 0.5 + 1.0
        assert results[0].timed_out and not results[0].restarted
        assert "ZeroDivisionError" in (results[1].error or "")
        assert results[2].is_final and results[2].final_answer == 42
        assert "not allowed" in (results[3].error or "")
        assert results[4].error is None
        assert results[5].timed_out
        assert box.commit(0) is False  # killed by the worker: nothing to keep
        assert ok(box, "keep").last_value_repr == "'me'"
        box.run_candidates(["keep = 'x'\n1 / 0", "keep = 'slow'\nwhile True: pass"])
        assert box.commit(1) is True  # interrupted softly: its partial state is kept
        assert ok(box, "keep").last_value_repr == "'slow'"


def test_candidates_call_host_tools() -> None:
    with CodeSandbox(tools={"web_search": lambda q: f"doc about {q}"}, timeout_s=5) as box:
        results = box.run_candidates([f"web_search('q{i}')" for i in range(4)])
        assert [r.last_value_repr for r in results] == [f"'doc about q{i}'" for i in range(4)]
        assert box.commit(2)
        assert ok(box, "web_search('again')").last_value_repr == "'doc about again'"


def test_fanout_of_eight_is_fast_on_a_warm_worker() -> None:
    with CodeSandbox(timeout_s=5) as box:
        ok(box, "x = 0")
        times = []
        for i in range(5):
            started = time.perf_counter()
            box.run_candidates([f"y = x + {k}" for k in range(8)])
            box.commit(i % 8)
            times.append(time.perf_counter() - started)
        # speed is `edgeagent bench sandbox` (target 0.1 s); this is a 10x sanity bound
        assert sorted(times)[2] < 1.0
        assert ok(box, "y").last_value_repr == "4"


# ---------------------------------------------------------------- restarts and config


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"worker {pid} still alive")


def test_worker_killed_from_outside_restarts_with_a_plain_message() -> None:
    with CodeSandbox(timeout_s=5) as box:
        ok(box, "x = 1")
        pid = box.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)  # its pipe is closed: the next request's write fails (EPIPE)
        result = box.run("x")
        assert result.restarted and result.error is not None
        assert "variables, imports and functions from earlier steps were lost" in result.error
        assert "NameError" in (box.run("x").error or "")
        assert ok(box, "2 + 2").last_value_repr == "4"
        assert box.worker_pid != pid


def test_too_long_code_is_refused_without_running() -> None:
    with CodeSandbox(max_code_chars=1000) as box:
        result = box.run("x = 1\n" * 1000)
        assert result.error is not None and "too long" in result.error


def test_configuration_problems_raise_user_error() -> None:
    with pytest.raises(UserError):
        CodeSandbox(tools={"__import__": lambda q: q})
    with pytest.raises(UserError):
        CodeSandbox(tools={"final_answer": lambda q: q})
    with pytest.raises(UserError):
        CodeSandbox(timeout_s=0)
    with pytest.raises(UserError):
        CodeSandbox(preload=["os"])
    box = CodeSandbox(python="/nonexistent/python3")
    with pytest.raises(UserError):
        box.run("1")
    box.close()


def test_closed_sandbox_leaves_no_process() -> None:
    box = CodeSandbox()
    ok(box, "1")
    pid = box.worker_pid
    assert pid is not None
    box.close()
    assert process_gone(pid)
    with pytest.raises(RuntimeError):
        box.run("1")


def test_bench_reports_the_issue_keys() -> None:
    from edgeagent.bench import sandbox as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    report = bench.run(parser.parse_args(["--calls", "10", "--rounds", "3", "--fresh", "3"]))
    for key in ("call_p50_ms", "call_p95_ms", "fanout8_ms", "cold_start_ms",
                "fresh_subprocess_p50_ms", "call_vs_fresh_ratio", "fanout8_vs_fresh8_ratio"):
        assert isinstance(report[key], float) and report[key] > 0
    assert report["call_p50_ms"] <= report["call_p95_ms"]
