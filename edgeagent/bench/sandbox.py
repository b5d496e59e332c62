"""`edgeagent bench sandbox`: the code tool's latency against a fresh process per call.

All figures come from one run, so ratios compare like with like:

- `call_p50_ms` / `call_p95_ms`: one small snippet (a sum, a print, a last
  value) in a warm session, end to end through `CodeSandbox.run`.
- `fanout8_ms`: 8 candidate snippets through fork, run and commit of one
  (`run_candidates` + `commit`), median over `--rounds`; with `--heavy` the
  session has numpy and sympy loaded first (bigger process to fork).
  `fanout8_overhead_ms` is that minus one warm call.
- `cold_start_ms`: a new `CodeSandbox` up to its first answer, confined;
  `cold_start_unconfined_ms` the same with the OS layer off (before/after),
  `confine_ms` the worker's own time spent confining itself.
- `fanout8_unconfined_ms`: the fan-out with the OS layer off (what the
  seccomp filter and Landlock cost on fork, run and commit).
- `layers`: which confinement layers are active here (see
  `edgeagent.tools.sandbox.protections`), and why the others are not.
- `fresh_subprocess_p50_ms`: the baseline, `python -I -S -c <snippet>` per call
  (no sandbox at all), and `fresh_subprocess8_ms` = 8 of them in a row.

Not covered: heavy snippets (numpy/sympy work), host tool round trips.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from edgeagent.bench.report import percentile

SNIPPET = "x = sum(range(100))\nprint(x)\nx"
TARGETS = {"call_p50_ms": 20.0, "fanout8_ms": 100.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=200, help="warm calls timed (default 200)")
    parser.add_argument("--rounds", type=int, default=20, help="8-way fan-outs timed (default 20)")
    parser.add_argument("--fresh", type=int, default=20,
                        help="fresh-subprocess baseline calls (default 20)")
    parser.add_argument("--heavy", action="store_true",
                        help="load numpy and sympy in the session before the fan-out")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.tools import CodeSandbox
    from edgeagent.tools.sandbox import protections

    calls = max(10, int(getattr(args, "calls", 200)))
    rounds = max(3, int(getattr(args, "rounds", 20)))
    fresh = max(3, int(getattr(args, "fresh", 20)))
    heavy = bool(getattr(args, "heavy", False))

    def sandbox(confined: bool) -> CodeSandbox:
        box = CodeSandbox()
        if not confined:  # the bench's own before/after switch, not an option
            box._layers = {"python_layer": True, "os_layer": False}
        return box

    cold: dict[bool, list[float]] = {True: [], False: []}
    confine_ms: list[float] = []
    for _ in range(3):
        for confined in (False, True):
            t = time.perf_counter()
            with sandbox(confined) as box:
                box.run("1")
                cold[confined].append(time.perf_counter() - t)
                if confined:
                    confine_ms.append(float(box.protections.get("confine_ms") or 0.0))

    with CodeSandbox() as box:
        for _ in range(10):
            box.run(SNIPPET)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            result = box.run(SNIPPET)
            times.append(time.perf_counter() - t)
            if result.error is not None:
                raise RuntimeError(f"benchmark snippet failed: {result.error}")
    codes = [f"y = x + {i}\nprint(y)\ny" for i in range(8)]
    fans: dict[bool, list[float]] = {True: [], False: []}
    with sandbox(True) as confined_box, sandbox(False) as unconfined_box:
        boxes = {True: confined_box, False: unconfined_box}
        for box in boxes.values():
            box.run(SNIPPET)
            if heavy:
                box.run("import numpy\nimport sympy")
        for i in range(rounds + 2):  # interleaved, so load drift hits both alike
            for confined, box in boxes.items():
                t = time.perf_counter()
                box.run_candidates(codes)
                box.commit(i % 8)
                if i >= 2:
                    fans[confined].append(time.perf_counter() - t)
    fan = fans[True]

    baseline = []
    command = [sys.executable, "-I", "-S", "-c", SNIPPET.replace("\nx", "\nrepr(x)")]
    for _ in range(fresh):
        t = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        baseline.append(time.perf_counter() - t)

    call_p50 = statistics.median(times)
    fresh_p50 = statistics.median(baseline)
    fan_p50 = statistics.median(fan)
    report: dict[str, Any] = {
        "call_p50_ms": _ms(call_p50),
        "call_p95_ms": _ms(percentile(times, 0.95)),
        "fanout8_ms": _ms(fan_p50),
        "fanout8_overhead_ms": _ms(max(0.0, fan_p50 - call_p50)),
        "cold_start_ms": _ms(statistics.median(cold[True])),
        "cold_start_unconfined_ms": _ms(statistics.median(cold[False])),
        "confine_ms": round(statistics.median(confine_ms), 3),
        "fanout8_unconfined_ms": _ms(statistics.median(fans[False])),
        "fresh_subprocess_p50_ms": _ms(fresh_p50),
        "fresh_subprocess8_ms": _ms(8 * fresh_p50),
        "call_vs_fresh_ratio": round(call_p50 / fresh_p50, 4),
        "fanout8_vs_fresh8_ratio": round(fan_p50 / (8 * fresh_p50), 4),
        "calls": calls,
        "rounds": rounds,
        "heavy": heavy,
        "targets": TARGETS,
        "layers": {name: {"active": bool(v.get("active")), "detail": str(v.get("detail"))}
                   for name, v in protections()["layers"].items()},
    }
    report["meets_targets"] = all(report[k] <= v for k, v in TARGETS.items())
    return report


if __name__ == "__main__":  # pragma: no cover - `edgeagent bench sandbox` is the entry point
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    print(json.dumps(run(parser.parse_args()), indent=2))
