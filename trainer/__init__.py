"""Teacher trajectories to a distilled student: gold trajectories, import, filtering,
SFT rendering, LoRA training and merging.

Modules (import each directly; this package imports nothing heavy):

- `gold`: GSM8K calculator annotations as Thought/Code trajectories (no teacher),
  and CoT targets; `gold_qa`: HotpotQA supporting pages + a local index;
- `generate` (+ `teacher`, `ftp`): teacher trajectories from the agent loop;
- `importer`: the paper's released smolagents `log_data` into our schema;
- `filter`: keep correct trajectories without parse errors (`edgeagent.scoring`);
- `render`: chat template -> `(input_ids, labels)`, only assistant tokens trained;
- `train` (+ `examples`, `steps`, `runtime`, `checkpoint`, `distributed`): LoRA SFT
  with peft; `merge` (+ `combine`): adapters folded into the base; `run`: the pipeline;
- `hf`: loading bases (HF dir, Hub id, GGUF) and tokenizers.

`gold`, `gold_qa`, `importer` and `filter` need no torch; `render` needs
transformers; `train`, `merge`, `hf` need the `train` extra
(`require_train_extra()` says so in one line). The CLI is `edgeagent distill`.

Not covered: sequence packing, planning-step examples (the reference adds
them when planning was on).
"""

from __future__ import annotations

from edgeagent.errors import UserError


def require_train_extra() -> None:
    """A one-line `UserError` when torch, transformers or peft is missing."""
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise UserError(f"this command needs the train extra ({exc.name} is missing): "
                        "pip install 'edgeagent[train]'") from None
