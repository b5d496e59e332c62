"""Benchmarks behind `edgeagent bench …`.

Each module exposes `add_arguments(parser)` and `run(args) -> dict`.
"""
