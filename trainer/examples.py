"""Training examples: trajectory records rendered to token ids, and the shared prefix.

    examples = load_examples(tokenizer, Path("kept.jsonl"), max_len=10240)
    n = shared_prefix(examples)     # untrained tokens every example starts with

Records whose assistant turns all start after `max_len` are skipped with a
warning (training on them would be a zero loss); other rendering errors
(`trainer.render`) stop the run.

Not covered: the order examples are visited in (`trainer.train`), tokenizing
(`trainer.render`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeagent.agent.trajectory import read_records
from edgeagent.errors import UserError
from trainer.render import IGNORE, PastMaxLen, Rendered, render_messages


def _warn(text: str) -> None:
    print(f"edgeagent: warning: {text}", file=sys.stderr)


def load_examples(tokenizer: Any, data: Path, max_len: int, limit: int | None = None,
                  warn: Callable[[str], None] | None = None) -> list[Rendered]:
    """The rendered records; those whose assistant turns all lie past `max_len` are
    skipped with a warning (an error only when nothing is left)."""
    records = read_records(data)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise UserError(f"{data} holds no trajectories")
    out: list[Rendered] = []
    skipped: list[str] = []
    for r in records:
        try:
            out.append(render_messages(tokenizer, r.messages, max_len=max_len, example_id=r.id))
        except PastMaxLen:
            skipped.append(r.id)
    if skipped:
        if not out:
            raise UserError(f"every example of {data} starts its assistant turns after "
                            f"--max-len {max_len}: raise --max-len")
        (warn or _warn)(f"skipped {len(skipped)} of {len(records)} examples whose assistant "
                        f"turns all start after --max-len {max_len} (e.g. {skipped[0]!r})")
    return out


def shared_prefix(examples: list[Rendered]) -> int:
    """Tokens every example starts with and none of which is trained (may be 0)."""
    first = examples[0]
    n = len(first.input_ids) - 1
    for r in examples[1:]:
        n = min(n, len(r.input_ids) - 1)
        i = 0
        while i < n and r.input_ids[i] == first.input_ids[i]:
            i += 1
        n = i
    for r in examples:
        trained = [i for i, x in enumerate(r.labels) if x != IGNORE]
        if trained:
            n = min(n, trained[0] - 1)  # the token before the first label stays in the suffix
    return max(0, n)
