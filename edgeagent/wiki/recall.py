"""Recall@k of a wiki index on questions with known gold article titles.

`load_gold_questions(path)` reads `retrieval/hotpotqa_gold_titles.jsonl`
(only `gold_in_seed: true` by default); `recall_at_k(index, questions, ks)`
scores, per question, the fraction of its gold titles among the titles of the
top-k passages, averaged over questions.

Not covered: answer-level metrics (exact match, F1), which belong to eval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgeagent.errors import UserError
from edgeagent.wiki.passages import Passage


@dataclass(frozen=True)
class GoldQuestion:
    question: str
    gold_titles: tuple[str, ...]


class Searchable(Protocol):
    def search(self, query: str, k: int = 3) -> list[Passage]: ...


def load_gold_questions(path: Path, *, only_in_seed: bool = True) -> list[GoldQuestion]:
    out: list[GoldQuestion] = []
    try:
        data = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(data.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{Path(path).name} line {n}: invalid JSON") from None
        if only_in_seed and not record.get("gold_in_seed"):
            continue
        out.append(GoldQuestion(str(record["question"]), tuple(record.get("gold_titles") or ())))
    return out


def recall_at_k(
    index: Searchable, questions: Sequence[GoldQuestion], ks: Sequence[int] = (3, 10)
) -> dict[int, float]:
    """Mean fraction of gold titles found in the top k, for each k in `ks`."""
    questions = [q for q in questions if q.gold_titles]
    if not questions:
        return {k: 0.0 for k in ks}
    top = max(ks)
    totals = dict.fromkeys(ks, 0.0)
    for q in questions:
        titles = [p.title for p in index.search(q.question, top)]
        gold = set(q.gold_titles)
        for k in ks:
            totals[k] += len(gold.intersection(titles[:k])) / len(gold)
    return {k: totals[k] / len(questions) for k in ks}
