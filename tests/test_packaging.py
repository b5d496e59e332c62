"""What users install: the wheel holds every file the packages need, and the metadata is true.

- every git-tracked non-Python file under `edgeagent/`, `trainer/`, `converters/` is
  inside the built wheel (the first wave shipped a wheel without the app's stylesheet);
- `requires-python` admits no interpreter the code cannot run on;
- every third-party module a package imports is a declared dependency of the extra
  that needs it (torch and transformers only under `train`).

The wheel is built here, offline (`--no-build-isolation`, `--no-deps`). The installed
app itself is exercised by `tests/test_installed.py` and `packaging/smoke.sh`.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgeagent", "trainer", "converters")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # a copy of the tracked tree, so that build leftovers in the checkout cannot
    # hide a file the wheel would miss on a fresh clone
    src = out / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            target.write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True)
    (built,) = out.glob("edgeagent-*.whl")
    return built


def _tracked_package_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    return [name for name in listing if (ROOT / name).exists()]


def test_every_tracked_package_file_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = _tracked_package_files()
    assert any(name.endswith(".tcss") for name in tracked)
    missing = [name for name in tracked if name not in names]
    assert not missing, f"tracked files missing from the wheel: {missing}"


def test_wheel_holds_no_tests_or_caches(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    bad = [n for n in names if n.startswith("tests/") or "__pycache__" in n
           or n.endswith((".pyc", ".gguf", ".safetensors"))]
    assert not bad


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_requires_python_matches_the_code() -> None:
    spec = _pyproject()["project"]["requires-python"]
    floor = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", spec).groups())  # type: ignore[union-attr]
    uses_tomllib = any("import tomllib" in p.read_text() for pkg in PACKAGES
                       for p in (ROOT / pkg).rglob("*.py"))
    if uses_tomllib:  # tomllib is 3.11+
        assert floor >= (3, 11), f"code imports tomllib but requires-python is {spec}"


# which extras a module may rely on, by path prefix (longest prefix wins)
EXTRAS_BY_PATH: dict[str, tuple[str, ...]] = {
    "edgeagent": (),
    "edgeagent/eval/compare.py": ("eval",),
    "edgeagent/cli/distill.py": ("train",),
    "trainer": ("train",),
    "converters": ("train",),
}


def _extras_for(rel: str) -> tuple[str, ...]:
    best = max((p for p in EXTRAS_BY_PATH if rel == p or rel.startswith(p.rstrip("/") + "/")),
               key=len)
    return EXTRAS_BY_PATH[best]


def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower().replace("_", "-")


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in PACKAGES}


def test_every_imported_module_is_declared() -> None:
    project = _pyproject()["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = {k: {_requirement_name(r) for r in v}
              for k, v in project["optional-dependencies"].items()}
    dist_of = metadata.packages_distributions()
    problems = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            allowed = set(base)
            for extra in _extras_for(rel):
                allowed |= extras.get(extra, set())
            for module in sorted(_third_party_imports(path)):
                dists = {d.lower().replace("_", "-") for d in dist_of.get(module, [module])}
                if not dists & allowed:
                    problems.append(f"{rel}: imports {module} ({', '.join(sorted(dists))}) "
                                    f"not declared for {_extras_for(rel) or 'the base install'}")
    assert not problems, "\n".join(problems)


def test_the_app_never_imports_torch_or_transformers() -> None:
    heavy = {"torch", "transformers", "peft", "accelerate"}
    offenders = []
    for path in (ROOT / "edgeagent").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if "train" in _extras_for(rel):
            continue
        if _third_party_imports(path) & heavy:
            offenders.append(rel)
    assert not offenders


def test_the_product_never_locates_data_in_a_source_checkout() -> None:
    """Data comes from the data dir, `--data-dir` or a download, never `../shared`."""
    pattern = re.compile(r"""["']shared["']\s*/\s*["']data["']|\.\./shared"""
                         r"""|parents\[\d\]\s*/\s*["']shared""")
    offenders = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
