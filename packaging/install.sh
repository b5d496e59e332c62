#!/usr/bin/env bash
# edgeagent installer: run once on a new machine.
#
#   packaging/install.sh              install the app (pipx if present, else a venv),
#                                     fetch the default model and starter wiki, start the app
#   packaging/install.sh --no-start   the same, without starting the app
#   packaging/install.sh --dev        a development venv in ./.venv (editable, dev + train extras)
#   packaging/install.sh --uninstall  remove the app (chats, models and wikis stay)
#   packaging/install.sh --uninstall --purge   also remove chats, models, wikis, config, cache
#
# Why a script and not a bare `pip install`: llama-cpp-python ships only as source and
# its default native build dies with SIGILL on some CPUs (AMX), so we build it once with
# portable flags into a wheel cache and install from there. torch (train extra) is
# pinned to the local CPU build; an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
TORCH_VERSION=2.13.0
PORTABLE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/edgeagent
FLAGS_ID=$(printf '%s' "$PORTABLE_FLAGS" | sha256sum | cut -c1-12)
WHEEL_DIR=${EDGEAGENT_WHEEL_DIR:-$CACHE/wheels/llama-cpp-python-$LLAMA_VERSION-$FLAGS_ID}
VENV=${EDGEAGENT_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/edgeagent/venv}
BIN_DIR=${EDGEAGENT_BIN_DIR:-$HOME/.local/bin}

mode=app
start=1
purge=0
for arg in "$@"; do
  case "$arg" in
    --dev) mode=dev; start=0 ;;
    --no-start) start=0 ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

uninstall() {
  local data=${XDG_DATA_HOME:-$HOME/.local/share}/edgeagent
  local config=${XDG_CONFIG_HOME:-$HOME/.config}/edgeagent
  if command -v pipx >/dev/null 2>&1 && pipx list --short 2>/dev/null | grep -q '^edgeagent '; then
    say "removing the pipx install"
    pipx uninstall edgeagent
  fi
  if [ -L "$BIN_DIR/edgeagent" ] && [ "$(readlink "$BIN_DIR/edgeagent")" = "$VENV/bin/edgeagent" ]; then
    rm -f "$BIN_DIR/edgeagent"
  fi
  if [ -d "$VENV" ]; then
    say "removing $VENV"
    rm -rf "$VENV"
  fi
  if [ "$purge" = 1 ]; then
    say "purging chats, models, wikis ($data), config ($config) and cache ($CACHE)"
    rm -rf "$data" "$config" "$CACHE"
  else
    say "kept your chats, models and wikis in $data (--purge removes them)"
  fi
}

if [ "$mode" = uninstall ]; then
  uninstall
  exit 0
fi
if [ "$purge" = 1 ]; then
  echo "install.sh: --purge goes with --uninstall" >&2; exit 2
fi

# 1. llama-cpp-python, built once with portable CPU flags
build_llama() {
  if ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    say "llama-cpp-python $LLAMA_VERSION: using the cached portable build in $WHEEL_DIR"
    return
  fi
  say "building llama-cpp-python $LLAMA_VERSION with portable CPU flags (about 8 minutes on 2 cores)"
  mkdir -p "$WHEEL_DIR"
  local tmp
  tmp=$(mktemp -d "$WHEEL_DIR/.build.XXXXXX")
  CMAKE_ARGS="$PORTABLE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PYTHON" -m pip wheel --no-deps --no-cache-dir --disable-pip-version-check \
    "llama-cpp-python==$LLAMA_VERSION" -w "$tmp"
  mv "$tmp"/llama_cpp_python-*.whl "$WHEEL_DIR"/
  rm -rf "$tmp"
}

constraints() {
  local file="$CACHE/constraints.txt"
  mkdir -p "$CACHE"
  printf 'llama-cpp-python==%s\ntorch==%s\n' "$LLAMA_VERSION" "$TORCH_VERSION" > "$file"
  echo "$file"
}

build_llama
CONSTRAINTS=$(constraints)
PIP_ARGS=(--disable-pip-version-check --no-cache-dir --find-links "$WHEEL_DIR" -c "$CONSTRAINTS")

if [ "$mode" = dev ]; then
  say "development venv in $ROOT/.venv"
  [ -x "$ROOT/.venv/bin/python" ] || "$PYTHON" -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: the local CPU build
  "$ROOT/.venv/bin/python" -m pip install -q "${PIP_ARGS[@]}" "torch==$TORCH_VERSION"
  "$ROOT/.venv/bin/python" -m pip install -q "${PIP_ARGS[@]}" -e "$ROOT[dev,train,server]"
  EDGEAGENT="$ROOT/.venv/bin/edgeagent"
elif command -v pipx >/dev/null 2>&1; then
  say "installing with pipx"
  pipx install --force --pip-args="${PIP_ARGS[*]}" "$ROOT"
  EDGEAGENT=$(command -v edgeagent || echo "$HOME/.local/bin/edgeagent")
else
  say "pipx not found: installing into a venv at $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${PIP_ARGS[@]}" "$ROOT"
  mkdir -p "$BIN_DIR"
  ln -sf "$VENV/bin/edgeagent" "$BIN_DIR/edgeagent"
  EDGEAGENT="$VENV/bin/edgeagent"
  case ":$PATH:" in
    *":$BIN_DIR:"*) ;;
    *) say "add $BIN_DIR to your PATH to run \`edgeagent\` from anywhere" ;;
  esac
fi

if [ "$mode" = app ]; then
  say "fetching the default model"
  "$EDGEAGENT" models fetch-default
  if "$EDGEAGENT" wiki --help >/dev/null 2>&1; then
    say "building the starter Wikipedia index"
    "$EDGEAGENT" wiki starter
  fi
  say "installed: $EDGEAGENT"
  if [ "$start" = 1 ]; then
    if [ -t 0 ] && [ -t 1 ]; then
      exec "$EDGEAGENT"
    fi
    say "not a terminal: skipping the app; try: $EDGEAGENT ask \"What is 17 * 23?\""
  fi
fi
