"""The `--straggler` command-line option, shared by `ask` and `eval`.

`quorum` (the default) ends a voting step once half the candidates reached a
stop sequence and cuts the rest; `wait` waits for every candidate, as the
paper does. Only a dict of argparse keywords: importing it costs nothing.
Not covered: the policy itself (`edgeagent.engines.batch_sampling`, `agent.loop`).
"""

from __future__ import annotations

from typing import Any

STRAGGLER_OPTION: dict[str, Any] = {
    "choices": ("quorum", "wait"),
    "default": "quorum",
    "help": "with --votes > 1: end a step once half the candidates finished and cut the rest "
    "(quorum, default) or wait for every candidate (wait, the paper's behaviour)",
}
