"""Self-consistent action voting: which of N sampled candidates to keep.

A candidate's vote key is (its printed output, normalised; its final answer
value). The reference implementation compared printed output only, so every
candidate that just called `final_answer(x)` fell into one group whatever `x`
was; here `final_answer(3)` and `final_answer(4)` are different keys.
Candidates that failed to parse or raised are left out; the largest group wins,
ties go to the group whose first member came first, and the chosen candidate is
that group's first member. No candidate ok: `None` (the loop then keeps the
first candidate and shows its error).

Not covered: sampling, running or committing candidates (see `loop`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def normalise_output(stdout: str) -> str:
    """Printed text with trailing spaces per line and surrounding blank lines removed."""
    return "\n".join(line.rstrip() for line in stdout.strip().splitlines())


def vote_key(stdout: str, is_final: bool, final_answer: Any = None) -> str:
    """The grouping key, as a JSON string (readable in trajectories and the UI)."""
    final = final_answer if is_final else None
    return json.dumps(
        {"printed": normalise_output(stdout), "final": is_final, "answer": final},
        ensure_ascii=False, sort_keys=True, default=repr,
    )


@dataclass(frozen=True)
class Ballot:
    chosen: int | None  # None: no candidate was ok
    agree: int
    groups: dict[str, list[int]]  # key -> candidate indexes, ok candidates only


def choose(keys: Sequence[str], ok: Sequence[bool]) -> Ballot:
    """Group the ok candidates by key; the largest group's first member wins."""
    groups: dict[str, list[int]] = {}
    for i, (key, good) in enumerate(zip(keys, ok, strict=True)):
        if good:
            groups.setdefault(key, []).append(i)
    if not groups:
        return Ballot(None, 0, groups)
    # dicts keep insertion order = order of first members, so max() keeps the earliest on ties
    best = max(groups.values(), key=len)
    return Ballot(best[0], len(best), groups)
