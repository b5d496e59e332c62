"""Training examples: trajectory records rendered to token ids, and the shared prefix.

    examples = load_examples(tokenizer, Path("kept.jsonl"), max_len=10240)
    n = shared_prefix(examples)     # untrained tokens every example starts with

Records whose assistant turns all start after `max_len` are skipped with a
warning (training on them would be a zero loss); other rendering errors
(`trainer.render`) stop the run.

`epoch_order` deals one epoch's examples: a plain shuffle, or with
`group_by_length` length-grouped batches (shuffle, then within windows of 64
batches sort by length so a batch holds examples of similar length, then
shuffle the batches): with `--batch-size` > 1 the padding a batch carries
shrinks to almost nothing while the order stays random at the batch level.

Not covered: tokenizing (`trainer.render`), packing several examples into one
sequence (it needs attention that does not cross example boundaries).
"""

from __future__ import annotations

import random
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


GROUP_WINDOW = 64  # batches sorted together when grouping by length


def epoch_order(lengths: list[int], batch_size: int, rng: random.Random,
                group_by_length: bool = False) -> list[int]:
    """Example indexes for one epoch, read `batch_size` at a time."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length or batch_size == 1:
        return order
    window = batch_size * GROUP_WINDOW
    batches: list[list[int]] = []
    for i in range(0, len(order), window):
        part = sorted(order[i:i + window], key=lambda j: -lengths[j])
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    tail = [batches.pop()] if len(batches[-1]) < batch_size else []
    rng.shuffle(batches)
    return [j for b in batches + tail for j in b]


def padding_waste(batches: list[list[Rendered]]) -> float:
    """The fraction of a padded batch's positions that are padding."""
    padded = sum(len(b) * max(len(r.input_ids) for r in b) for b in batches if b)
    real = sum(len(r.input_ids) for b in batches for r in b)
    return 1.0 - real / padded if padded else 0.0
