"""SFT data: a trajectory's `messages` through the student's chat template into
`(input_ids, labels)`, with every non-assistant token masked.

    r = render_messages(tokenizer, traj.messages, max_len=4096)
    r.input_ids, r.labels          # labels[i] == -100 where nothing is trained
    print(visualize(tokenizer, r))  # trained tokens green, masked grey (nanochat-style)

Only assistant turns are trained: their content and the template's end-of-turn
token (`<|im_end|>` for ChatML), so the student learns to stop. Masked: the
system prompt, the task, every observation (tool output is a user turn in our
format), and the template's role headers (`<|im_start|>assistant\\n`). The
spans come from rendering the chat prefix by prefix (the template must be
prefix-stable, as ChatML is); the whole chat is then tokenized once and a token
is trained only when it lies entirely inside an assistant span.

An example with no trained token raises `NoSupervisedTokens` (`PastMaxLen`
when `max_len` cut off all its assistant turns: training skips those with a
warning); `collate` refuses a batch whose labels are all masked. Never a
silent zero loss. The trained tokens of each assistant turn must decode to
exactly that turn (`TrainedTextMismatch` otherwise): a tokenizer whose offsets
trim spaces would otherwise leave indentation untrained without a word.

Not covered: packing several examples into one sequence; templates that
rewrite earlier turns (Qwen3's thinking removal) — refused with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeagent.engines.base import Message
from edgeagent.errors import UserError

IGNORE = -100


class NoSupervisedTokens(UserError):
    """An example in which every label is masked."""


class PastMaxLen(NoSupervisedTokens):
    """An example whose assistant turns all start after the length limit."""


class TrainedTextMismatch(UserError):
    """The trained tokens of an assistant turn do not decode to that turn."""


@dataclass
class Rendered:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    id: str = ""

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def _render(tokenizer: Any, messages: Sequence[Message], generation: bool = False) -> str:
    text = tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        tokenize=False, add_generation_prompt=generation,
    )
    return str(text)


def assistant_spans(
    tokenizer: Any, messages: Sequence[Message]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the character spans that are trained."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError("the student's tokenizer has no chat template")
    full = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:k], generation=True)
        after = _render(tokenizer, messages[: k + 1])
        if not (after.startswith(before) and full.startswith(after)):
            raise UserError("the chat template is not prefix-stable (it rewrites earlier "
                            "turns); cannot tell which tokens are the assistant's")
        end = len(after)
        while end > len(before) and after[end - 1].isspace():
            end -= 1  # the newline after <|im_end|> belongs to the template, not the turn
        spans.append((len(before), end))
    return full, spans


def render_messages(
    tokenizer: Any, messages: Sequence[Message], *, max_len: int | None = None,
    example_id: str = "",
) -> Rendered:
    """Token ids and labels of one chat (see module docstring)."""
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    labels = [IGNORE] * len(ids)
    owner: list[list[int]] = [[] for _ in spans]  # trained token indexes of each turn
    j = 0
    for i, (start, end) in enumerate(offsets):
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        if j < len(spans) and spans[j][0] <= start and end <= spans[j][1] and end > start:
            labels[i] = ids[i]
            owner[j].append(i)
    truncated = max_len is not None and len(ids) > max_len
    if truncated:
        ids, labels = ids[:max_len], labels[:max_len]
    out = Rendered(ids, labels, truncated, example_id)
    what = f"example {example_id!r}" if example_id else "an example"
    if out.n_trained == 0:
        if truncated:
            raise PastMaxLen(f"{what} has no supervised tokens: its assistant turns start "
                             f"after --max-len {max_len}")
        raise NoSupervisedTokens(f"{what} has no supervised tokens: it has no assistant turn")
    _check_decoded(tokenizer, text, spans, owner, ids, what)
    return out


def _check_decoded(tokenizer: Any, text: str, spans: list[tuple[int, int]],
                   owner: list[list[int]], ids: list[int], what: str) -> None:
    """Each assistant turn's trained tokens decode to exactly the turn (a prefix of it
    when `max_len` cut the turn)."""
    for k, ((start, end), idx) in enumerate(zip(spans, owner, strict=True)):
        kept = [ids[i] for i in idx if i < len(ids)]
        if not kept:
            continue
        decoded = tokenizer.decode(kept, skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
        turn = text[start:end]
        whole = len(kept) == len(idx)
        if decoded == turn or (not whole and turn.startswith(decoded)):
            continue
        at = next((n for n, (a, b) in enumerate(zip(decoded, turn, strict=False)) if a != b),
                  min(len(decoded), len(turn)))
        raise TrainedTextMismatch(
            f"{what}: the trained tokens of assistant turn {k + 1} decode to "
            f"{decoded[max(0, at - 20):at + 20]!r} where the turn has "
            f"{turn[max(0, at - 20):at + 20]!r} (character {at}): this tokenizer's offsets "
            "do not cover the turn, so part of it would go untrained")


def collate(batch: Sequence[Rendered], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors `input_ids`, `attention_mask`, `labels` (torch imported here)."""
    import torch

    if not batch:
        raise ValueError("empty batch")
    if all(r.n_trained == 0 for r in batch):
        raise NoSupervisedTokens("a batch in which every label is masked")
    width = max(len(r.input_ids) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


_GREEN = "\x1b[30;42m"
_GREY = "\x1b[2m"
_RESET = "\x1b[0m"


def visualize(tokenizer: Any, rendered: Rendered, *, color: bool = True) -> str:
    """Each token decoded; trained ones green (or `⟦…⟧` without colour), masked ones dim."""
    parts: list[str] = []
    trained_run: list[str] = []

    def flush() -> None:
        if trained_run:
            parts.append("⟦" + "".join(trained_run) + "⟧")
            trained_run.clear()

    for tok, lab in zip(rendered.input_ids, rendered.labels, strict=True):
        piece = tokenizer.decode([tok])
        if color:
            parts.append((_GREEN if lab != IGNORE else _GREY) + piece + _RESET)
        elif lab != IGNORE:
            trained_run.append(piece)
        else:
            flush()
            parts.append(piece)
    flush()
    return "".join(parts)


def summary(rendered: Sequence[Rendered]) -> dict[str, int]:
    return {
        "examples": len(rendered),
        "tokens": sum(len(r.input_ids) for r in rendered),
        "trained_tokens": sum(r.n_trained for r in rendered),
        "truncated": sum(1 for r in rendered if r.truncated),
    }
