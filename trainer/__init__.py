"""Teacher trajectories to a distilled student: gold trajectories, import, filtering,
SFT rendering, LoRA training and merging.

Modules (import each directly; this package imports nothing heavy):

- `gold`: GSM8K calculator annotations as Thought/Code trajectories (no teacher);
- `importer`: the paper's released smolagents `log_data` into our schema;
- `filter`: keep correct trajectories without parse errors (`edgeagent.scoring`);
- `render`: chat template -> `(input_ids, labels)`, only assistant tokens trained;
- `train`: LoRA SFT with peft; `merge`: adapter folded into the base;
- `hf`: loading bases (HF dir, Hub id, GGUF) and tokenizers.

`gold`, `importer` and `filter` need no torch; `render` needs transformers;
`train`, `merge`, `hf` need the `train` extra. The CLI is `edgeagent distill`.

Not covered yet: teacher generation with first-thought prefix (`distill
generate`, on top of the agent loop), CoT-distillation data, multi-GPU
launch configs, checkpoint resume, multi-adapter merges.
"""
