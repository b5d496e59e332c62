#!/usr/bin/env bash
# Exercise an INSTALLED edgeagent the way a new user would, from outside the source tree,
# with a fresh HOME: every command is printed before it runs; any failure stops the script.
#
#   packaging/smoke.sh /path/to/bin/edgeagent [HOME_DIR]
#
# Runs: --help, --version, models fetch-default, wiki starter, models list, wiki list,
# doctor, ask on the default model, bench sandbox --json, the app headless (Textual pilot:
# a question in, steps and an answer out), and the app in a real terminal (tmux) that
# must come up, answer, and never show a traceback. Used by packaging/test.sh for the
# wheel install and the pipx install.
set -euo pipefail
BIN=$(readlink -f "$1")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HOME=${2:-$(mktemp -d /tmp/edgeagent-smoke-home.XXXXXX)}
unset EDGEAGENT_HOME PYTHONPATH
WORK=$(mktemp -d /tmp/edgeagent-smoke.XXXXXX)
cd "$WORK"   # outside the source tree: nothing may resolve through ../shared or the checkout
PYTHON=$(head -1 "$BIN" | sed 's/^#!//' | awk '{print $1}')   # a shebang may carry flags (pipx: -E)
run() { printf '+ %s\n' "$*" >&2; "$@"; }

# the pinned wheels packaging/test.sh already fetched (same sha256 checks run on them)
if [ -n "${EDGEAGENT_SEED_WHEELS:-}" ] && [ -d "$EDGEAGENT_SEED_WHEELS" ]; then
  mkdir -p "$HOME/.cache/edgeagent/wheels"
  cp "$EDGEAGENT_SEED_WHEELS"/*.whl "$HOME/.cache/edgeagent/wheels/" 2>/dev/null || true
fi

run "$BIN" --help >/dev/null
run "$BIN" --version
run "$BIN" models fetch-default
run "$BIN" wiki starter
run "$BIN" models list
run "$BIN" wiki list
run "$BIN" doctor
run "$BIN" ask "What is 17 * 23?" --max-steps 2 --max-tokens 128 </dev/null
run "$BIN" bench sandbox --json >"$WORK/bench-sandbox.json"
"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("bench sandbox:", {k: v for k, v in d.items() if not isinstance(v, (dict, list))})' "$WORK/bench-sandbox.json"

# the app's own settings file keeps the toy model's answers short on a slow CI machine
mkdir -p "$HOME/.config/edgeagent"
printf '[tui]\nmax_steps = 2\nmax_tokens = 128\n' > "$HOME/.config/edgeagent/config.toml"

# the real terminal first, while the chat history is empty (an old answer on screen
# must not count as this one)
if command -v tmux >/dev/null 2>&1; then
  session="edgeagent-smoke-$$"
  printf '+ tmux: %s in a real terminal, ask a question, wait for the answer\n' "$BIN" >&2
  tmux new-session -d -s "$session" -x 110 -y 35 "HOME=$HOME $BIN; echo EDGEAGENT-EXITED=\$?; sleep 30"
  trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT
  screen() { tmux capture-pane -p -t "$session" -S -200; }
  wait_for() {  # PATTERN SECONDS
    local end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ]; do
      if screen | grep -q "Traceback\|EDGEAGENT-EXITED"; then
        screen >&2; echo "smoke: the app crashed or exited in the terminal" >&2; return 1
      fi
      screen | grep -q "$1" && return 0
      sleep 1
    done
    screen >&2; echo "smoke: '$1' did not appear within $2 s" >&2; return 1
  }
  wait_for "Ask a question" 120
  wait_for "toy model" 300      # the model loaded; the status bar marks the toy default
  tmux send-keys -t "$session" "What is 17 * 23?" Enter
  wait_for "Answer" 900
  screen | tail -n 25 >&2
  tmux send-keys -t "$session" C-q
  sleep 2
  if screen | grep -q "Traceback"; then screen >&2; echo "smoke: traceback on exit" >&2; exit 1; fi
  if ! screen | grep -q "EDGEAGENT-EXITED=0"; then
    screen >&2; echo "smoke: the app did not exit with status 0" >&2; exit 1
  fi
else
  echo "smoke: tmux not found: the real-terminal check needs it" >&2; exit 1
fi

cp "$ROOT/packaging/tui_check.py" "$WORK/tui_check.py"
run "$PYTHON" "$WORK/tui_check.py"
echo "smoke: the installed app works ($BIN)" >&2
