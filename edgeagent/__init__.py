"""edgeagent: a laptop-sized agent that thinks in code.

This package is the app (CLI, engines, tools, TUI). It never imports torch or
transformers; those belong to `trainer/` and `converters/` (the `train` extra).
"""

__version__ = "0.1.0"
