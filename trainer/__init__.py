"""trainer: teacher trajectories, filtering, LoRA SFT with masked observations, merging.

Not built yet (issue 7). Needs the `train` extra (torch, transformers, peft,
accelerate); `edgeagent` itself never imports this package.
"""
