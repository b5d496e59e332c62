"""The agent: Thought / Code / Observation loop with self-consistent action voting.

`events.py` is the contract with every consumer (TUI, `ask`, eval, trainer).
"""
