"""`edgeagent doctor`: what this install has, what works, and how to fix what does not.

Each check returns `Check(name, status, detail, fix)`; status is `ok`, `warn` (the app
works, with less), `fail` (something required is broken: `doctor` exits 1) or `info`.
Checks: versions (edgeagent, Python, llama-cpp-python and its CPU build flags, textual,
tantivy), CPU features against the llama.cpp build, the data/config/cache dirs and free
disk, the model the app would load (it is loaded and timed unless `quick`), the wiki
indexes, the code tool's protections, and the optional `train` extra.

Not covered: network reachability of the Hub, and GPUs (the app runs on the CPU).
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from edgeagent import __version__, locations
from edgeagent.errors import UserError

Status = Literal["ok", "warn", "fail", "info"]
MIN_FREE_BYTES = 1_000_000_000  # a model and an index need at least this much

# llama.cpp's build flags (llama_print_system_info) -> /proc/cpuinfo flag names
_CPU_FLAG_OF = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c",
    "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
    "AVX_VNNI": "avx_vnni",
}


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_versions() -> list[Check]:
    checks = [Check("edgeagent", "info", __version__),
              Check("python", "info", f"{platform.python_version()} ({sys.executable})")]
    for dist, required in (("llama-cpp-python", True), ("textual", True), ("tantivy", True),
                           ("RestrictedPython", True), ("numpy", True), ("sympy", True)):
        version = _version(dist)
        if version is None:
            checks.append(Check(dist, "fail" if required else "warn", "not installed",
                                "reinstall: packaging/install.sh"))
        else:
            checks.append(Check(dist, "info", version))
    return checks


def llama_build_flags() -> set[str]:
    """The CPU features llama.cpp was compiled for (`AVX2`, `FMA`, …)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    flags = set()
    for part in text.replace("|", "\n").splitlines():
        key, _, value = part.partition("=")
        if value.strip() == "1":
            flags.add(key.strip().split(":")[-1].strip())
    return flags


def cpu_flags() -> set[str] | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def check_cpu() -> list[Check]:
    try:
        built = llama_build_flags()
    except Exception as exc:  # an unimportable native library is the finding itself
        return [Check("llama.cpp", "fail", f"cannot load llama-cpp-python ({exc})",
                      "reinstall with portable flags: packaging/install.sh")]
    have = cpu_flags()
    known = sorted(f for f in built if f in _CPU_FLAG_OF)
    checks = [Check("llama.cpp build", "info", " ".join(known) or "no SIMD flags reported")]
    if have is None:
        checks.append(Check("cpu features", "info", "unknown (no /proc/cpuinfo)"))
        return checks
    missing = [f for f in known if _CPU_FLAG_OF[f] not in have]
    if missing:
        checks.append(Check("cpu features", "fail",
                            f"llama.cpp was built for {', '.join(missing)}, which this CPU "
                            "lacks (every model would die with SIGILL)",
                            "rebuild with portable flags: packaging/install.sh"))
    else:
        simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_int8")
                if f in have]
        checks.append(Check("cpu features", "ok", f"{', '.join(simd) or 'baseline'}; "
                            "the llama.cpp build runs here"))
    return checks


def check_dirs() -> list[Check]:
    checks = []
    for label, path in (("config dir", locations.config_dir()), ("data dir", locations.data_dir()),
                        ("cache dir", locations.cache_dir())):
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        detail = f"{path} ({free / 1e9:.1f} GB free)"
        if free < MIN_FREE_BYTES:
            checks.append(Check(label, "warn", detail, f"free some disk space under {existing}"))
        else:
            checks.append(Check(label, "ok", detail))
    return checks


def check_model(spec: str | None, *, load: bool = True) -> list[Check]:
    from edgeagent.models.default import DEFAULT_NAME
    from edgeagent.models.registry import Registry, resolve_model

    try:
        path = resolve_model(spec, fetch_default=False)
    except UserError as exc:
        return [Check("model", "fail", str(exc),
                      "edgeagent models fetch-default (or `models add FILE --default`)")]
    reg = Registry.load()
    name = next((n for n, e in reg.entries.items() if Path(e.path) == path), path.name)
    checks = [Check("model", "ok", f"{name}: {path} ({path.stat().st_size / 1e6:.0f} MB)")]
    if name == DEFAULT_NAME:
        checks.append(Check("model quality", "warn",
                            "the default model is a 135M toy: it cannot really use the tools",
                            "load a distilled student or a capable model (`edgeagent models "
                            "pull`, `edgeagent models default NAME`)"))
    if load:
        checks.append(_time_model(path))
    return checks


def _time_model(path: Path) -> Check:
    from edgeagent.engines.llamacpp import LlamaCppEngine

    try:
        start = time.perf_counter()
        engine = LlamaCppEngine(path, n_ctx=512)
        loaded = time.perf_counter() - start
        try:
            start = time.perf_counter()
            out = engine.generate("The capital of France is", max_tokens=16, ignore_eos=True)
            seconds = time.perf_counter() - start
        finally:
            engine.close()
    except UserError as exc:
        return Check("model loads", "fail", str(exc),
                     "delete the file and fetch it again (`edgeagent models rm NAME`, then add)")
    rate = out[0].completion_tokens / seconds if seconds > 0 else 0.0
    return Check("model loads", "ok",
                 f"loaded in {loaded:.1f} s; {rate:.1f} tok/s generating (16 tokens)")


def check_wikis() -> list[Check]:
    from edgeagent.wiki.index import WikiIndex
    from edgeagent.wiki.store import list_indexes

    metas = list_indexes()
    if not metas:
        return [Check("wiki", "warn", "no wiki index: web_search has nothing to search",
                      "edgeagent wiki starter (10k articles), or `edgeagent wiki build`")]
    checks = []
    for meta in metas:
        try:
            index = WikiIndex.open(meta.name)
            hits = len(index.search("history", k=1))
            checks.append(Check(f"wiki {meta.name}", "ok",
                                f"{len(index):,} passages; a search returns {hits}"))
        except UserError as exc:
            checks.append(Check(f"wiki {meta.name}", "warn", str(exc),
                                f"edgeagent wiki rm {meta.name}, then build it again"))
    return checks


def check_sandbox() -> list[Check]:
    """The code tool runs, and which of its protection layers this kernel gives it."""
    from edgeagent.tools.sandbox import protections, python_layer_only
    from edgeagent.tools.sandbox.host import CodeSandbox

    try:
        with CodeSandbox(timeout_s=20) as box:
            result = box.run("import math\nmath.comb(10, 3)")
            report = protections(box=box)
    except Exception as exc:  # the finding: the code tool cannot start here
        return [Check("code tool", "fail", f"the sandbox worker does not start ({exc})",
                      "report this with `edgeagent doctor --json`")]
    if result.error or result.last_value_repr != "120":
        return [Check("code tool", "fail", f"a trivial program failed: {result.error}",
                      "report this with `edgeagent doctor --json`")]
    checks = [Check("code tool", "ok", f"worker ready in {report.get('worker_ready_ms', 0):.0f} ms"
                    f" (confinement {report.get('confine_ms', 0):.0f} ms)")]
    for name, layer in report.get("layers", {}).items():
        checks.append(Check(f"  sandbox {name}", "ok" if layer.get("active") else "info",
                            str(layer.get("detail", ""))))
    if python_layer_only(report):
        checks.append(Check("sandbox layers", "warn",
                            "only the Python guard contains model code on this kernel "
                            "(no Landlock, no seccomp)",
                            "use a Linux kernel >= 5.13 with Landlock enabled and libseccomp"))
    return checks


def check_train_extra() -> list[Check]:
    have = {d: _version(d) for d in ("torch", "transformers", "peft")}
    if all(have.values()):
        return [Check("train extra", "info",
                      ", ".join(f"{k} {v}" for k, v in have.items()))]
    return [Check("train extra", "info", "not installed (only needed for `distill`/`convert`)",
                  "packaging/install.sh --dev, or pip install 'edgeagent[train]'")]


def run_checks(model: str | None = None, *, quick: bool = False) -> list[Check]:
    """Every check, in the order `doctor` prints them."""
    checks = check_versions() + check_cpu() + check_dirs()
    checks += check_model(model, load=not quick)
    checks += check_wikis()
    checks += check_sandbox()
    checks += check_train_extra()
    return checks


def as_json(checks: list[Check]) -> dict[str, object]:
    return {"ok": not any(c.status == "fail" for c in checks),
            "checks": [asdict(c) for c in checks]}
