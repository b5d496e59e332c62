"""The evaluation harness behind `edgeagent eval`: the paper's benchmarks, side by side.

- `data`: benchmark short names, the shared data folder, reading examples
- `cot`: the non-agent modes (the paper's CoT prompt; answer only)
- `runner`: parallel, resumable runs -> per-benchmark trajectory JSONL + summary.json
- `metrics`: per-question numbers and per-benchmark / averaged metrics
- `compare`: several runs as a table and a PNG bar chart (the paper's Table 2)

Scoring is the shared `edgeagent.scoring` (the trainer's filter uses the same);
the agent is the one loop (`edgeagent.agent.loop`). Not covered: the CLI
(`edgeagent.cli.eval`), training.
"""
