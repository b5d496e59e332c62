"""Teacher trajectories to a distilled student: gold trajectories, import, filtering,
SFT rendering, LoRA training and merging.

Modules (import each directly; this package imports nothing heavy):

- `gold`: GSM8K calculator annotations as Thought/Code trajectories (no teacher);
- `importer`: the paper's released smolagents `log_data` into our schema;
- `filter`: keep correct trajectories without parse errors (`edgeagent.scoring`);
- `render`: chat template -> `(input_ids, labels)`, only assistant tokens trained;
- `train`: LoRA SFT with peft; `merge`: adapter folded into the base;
- `hf`: loading bases (HF dir, Hub id, GGUF) and tokenizers.

- `generate`: teacher trajectories (an HTTP server, a GGUF, or `gold`), with
  the first-thought prefix; `run`: the whole pipeline from one TOML file.

`gold`, `importer` and `filter` need no torch; `render` needs transformers;
`train`, `merge`, `hf` need the `train` extra (`require_train_extra()` says
so in one line). The CLI is `edgeagent distill`.

Not covered: CoT-distillation data, multi-GPU launch configs.
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
