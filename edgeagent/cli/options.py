"""Command-line options that more than one command offers, defined once.

`add_straggler(parser)`: `--straggler quorum|wait` (`ask`, `eval`). `quorum`
(the default) ends a voting step once half the candidates reached a stop
sequence and cuts the rest; `wait` waits for every candidate, as the paper
does. Imports nothing heavy (`--help` loads it). Not covered: the policy itself
(`edgeagent.engines.base.StragglerPolicy`, `agent.loop.AgentConfig`).
"""

from __future__ import annotations

import argparse


def add_straggler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--straggler", choices=("quorum", "wait"), default="quorum",
        help="with --votes > 1: end a step once half the candidates finished and cut the "
        "rest (quorum, default) or wait for every candidate (wait, the paper's behaviour)")
