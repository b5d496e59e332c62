#!/bin/bash
# Issue 21 in miniature: two LoRA students of SmolLM2-135M-Instruct (the default model's
# Q4_1 GGUF, dequantized by the trainer) from the SAME questions, one on gold agent
# trajectories and one on the matching CoT targets, then the five eval rows.
#   K_GSM / K_QA : training questions (GSM8K train / HotpotQA gold titles minus the test)
#   N            : eval questions per benchmark (first N of GSM8K test, HotpotQA test)
#   N_SAG        : eval questions for the agent student with 8 votes
#   BASE         : the default model's GGUF; ROOT: where data, adapters, runs and the
#                  wiki index go (EDGEAGENT_HOME=$ROOT/home); S: the shared data folder
# Every stage is resumable: run the same command again after an interruption.
# Usage: BASE=…/SmolLM2-135M-Instruct.Q4_1.gguf bash docs/results/2026-12-02-paper-miniature.sh
set -euo pipefail
: "${K_GSM:=192}" "${K_QA:=64}" "${N:=50}" "${N_SAG:=20}" "${EPOCHS:=1}" "${MAX_LEN:=2304}"
: "${ROOT:=$PWD/runs/paper-miniature}" "${S:=../shared/data}" "${NICE:=nice -n 19}"
: "${BASE:?set BASE to the GGUF of the default model, SmolLM2-135M-Instruct.Q4_1.gguf}"
: "${WORKERS:=2}"
export EDGEAGENT_HOME=$ROOT/home
E="$NICE ${EDGEAGENT:-edgeagent}"
D=$ROOT/data; R=$ROOT/runs; mkdir -p "$D" "$R"
t() { local s=$SECONDS; "$@"; echo "  [$(( SECONDS - s )) s] $*" | tee -a "$ROOT/walltimes.log"; }

# 1. data (seconds)
[ -d "$EDGEAGENT_HOME/data/wiki/multihop" ] || $E wiki build multihop --from "$S/wiki/multihop_paragraphs.jsonl.gz"
G=$S/benchmarks/train/gsm8k_train_7473.jsonl
Q=(--bench hotpotqa --data "$S/retrieval/hotpotqa_gold_titles.jsonl" --exclude "$S/benchmarks/test/hotpotqa_500.json")
for f in agent cot; do
  [ -s "$D/gsm8k.$f.jsonl" ] || $E distill gold --data "$G" --format $f --limit $((K_GSM * 11 / 10 + 20)) --out "$D/gsm8k.$f.jsonl"
  [ -s "$D/qa.$f.jsonl" ] || $E distill gold "${Q[@]}" --format $f --out "$D/qa.$f.jsonl"
  { head -n "$K_GSM" "$D/gsm8k.$f.jsonl"; head -n "$K_QA" "$D/qa.$f.jsonl"; } > "$D/train.$f.jsonl"
done
cmp <(python3 -c 'import json,sys;[print(json.loads(l)["id"]) for l in open(sys.argv[1])]' "$D/train.agent.jsonl") \
    <(python3 -c 'import json,sys;[print(json.loads(l)["id"]) for l in open(sys.argv[1])]' "$D/train.cot.jsonl")

# 2. two students, identical settings (the paper's LoRA: r 64, alpha 128, lr 2e-4, batch 8)
for f in agent cot; do
  t $E distill train --model "$BASE" --data "$D/train.$f.jsonl" --out "$ROOT/lora-$f" \
      --epochs "$EPOCHS" --max-len "$MAX_LEN" --save-every 5
  [ -s "$ROOT/student-$f.lora.gguf" ] || t $E convert lora "$ROOT/lora-$f" --base "$BASE" --out "$ROOT/student-$f.lora.gguf"
done

# 3. the five rows (students: base GGUF + LoRA GGUF at load time, no requantization)
EV=(--bench gsm8k,hotpotqa --wiki multihop --workers "$WORKERS" --max-steps 4 --max-tokens 384)
t $E eval "${EV[@]}" --limit "$N" --model "$BASE" --mode cot --max-tokens 512 --out "$R/a-base-cot"
t $E eval "${EV[@]}" --limit "$N" --model "$BASE" --mode agent --out "$R/b-base-agent"
t $E eval "${EV[@]}" --limit "$N" --model "$BASE" --lora "$ROOT/student-cot.lora.gguf" --mode cot --max-tokens 512 --out "$R/c-cot-student"
t $E eval "${EV[@]}" --limit "$N" --model "$BASE" --lora "$ROOT/student-agent.lora.gguf" --mode agent --out "$R/d-agent-student"
t $E eval "${EV[@]}" --limit "$N_SAG" --model "$BASE" --lora "$ROOT/student-agent.lora.gguf" --mode agent --votes 8 --out "$R/e-agent-student-sag8"
for m in score f1 parse_error_rate tool_calls_per_question; do
  $E eval compare "$R"/a-* "$R"/b-* "$R"/c-* "$R"/d-* "$R"/e-* --metric $m --markdown --no-chart
done
