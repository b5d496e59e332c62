"""Factual QA metrics: SQuAD-style normalised exact match and token F1.

Normalisation (the SQuAD v1.1 evaluation script's): lowercase, drop
punctuation, drop the articles a/an/the, collapse whitespace. A gold answer may
be a string or a list of aliases; the best alias counts.

Not covered: semantic equivalence ("JFK" vs "John F. Kennedy") — that is the
LLM judge's job (`edgeagent.scoring.judge`).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation and articles, collapse whitespace."""
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _aliases(gold: str | Iterable[str]) -> list[str]:
    if isinstance(gold, str):
        return [gold]
    return [str(g) for g in gold] or [""]


def exact_match(prediction: str, gold: str | Iterable[str]) -> bool:
    """Normalised exact match against the gold answer (or any alias)."""
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(g) for g in _aliases(gold))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, gold: str | Iterable[str]) -> float:
    """Token-overlap F1 after normalisation; the best over aliases."""
    return max(_f1(prediction, g) for g in _aliases(gold))
