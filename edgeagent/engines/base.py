"""The engine contract shared by every backend.

`Engine.generate(messages | prompt, *, n, temperature, top_p, max_tokens,
stop, seed, prefix, on_token) -> list[Completion]`:

- `messages` is a chat (list of `{"role", "content"}`); the engine renders it
  with the model's own chat template. A plain `str` is taken as an already
  rendered prompt.
- `prefix` continues an assistant turn: the text is placed after the
  generation prompt and the model carries on from it (the first-thought
  prefix). The returned `text` does NOT include the prefix.
- `n > 1` returns `n` samples; `seed` makes them reproducible (sample `i` uses
  `seed + i`).
- `on_token(i, piece)` streams text pieces of sample `i` as they are decoded.
- `stop` strings end a sample; the stop string is not part of `text`.
- `straggler` (optional, engines that set `supports_straggler = True`): with
  `n > 1`, end the call before the slowest sample does — every sample still
  decoding once `quorum` samples stopped, and any sample longer than
  `length_bound` × the longest stopped one. Those end with `finish_reason`
  "cut". Engines without it simply wait for every sample.

Not covered here: tool calling, logprobs, embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

FinishReason = Literal["stop", "length", "cancelled", "cut"]


class Message(TypedDict):
    role: str
    content: str


TokenCallback = Callable[[int, str], None]


@dataclass
class Timings:
    """Seconds spent, and tokens evaluated, in one `generate` call."""

    prompt_s: float = 0.0
    generate_s: float = 0.0
    total_s: float = 0.0
    prompt_tokens_evaluated: int = 0


@dataclass
class Completion:
    """One sample."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    timings: Timings = field(default_factory=Timings)
    stop: str | None = None  # the stop string that ended it, if any
    tokens: list[int] | None = None  # the generated token ids, when the engine has them

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "stop": self.stop,
            "timings": {
                "prompt_s": self.timings.prompt_s,
                "generate_s": self.timings.generate_s,
                "total_s": self.timings.total_s,
                "prompt_tokens_evaluated": self.timings.prompt_tokens_evaluated,
            },
        }


class Engine(Protocol):
    """What the agent loop needs from a model."""

    name: str

    def generate(
        self,
        messages: Sequence[Message] | str,
        *,
        n: int = 1,
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int = 512,
        stop: Sequence[str] = (),
        seed: int | None = None,
        prefix: str | None = None,
        on_token: TokenCallback | None = None,
    ) -> list[Completion]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StragglerPolicy:
    """When a batched call may stop waiting for its slowest samples.

    `quorum`: once this many samples ended on a stop (a stop string or end of
    generation, not the length cap), the rest are cut. `length_bound`: once
    any sample stopped, a sample that has `length_bound` × the longest stopped
    sample's tokens (and at least `min_tokens` more than it) is cut. None
    turns either rule off; both off is the paper's wait-for-all."""

    quorum: int | None = None
    length_bound: float | None = None
    min_tokens: int = 16

    def to_cut(self, stopped: Sequence[int], live: Sequence[int]) -> list[int]:
        """Indexes into `live` (token counts of samples still decoding) to cut now,
        given the token counts of the samples that stopped so far."""
        if not stopped or not live:
            return []
        if self.quorum is not None and len(stopped) >= self.quorum:
            return list(range(len(live)))
        if self.length_bound is not None:
            longest = max(stopped)
            bound = max(longest * self.length_bound, longest + self.min_tokens)
            return [i for i, n in enumerate(live) if n >= bound]
        return []


def find_stop(text: str, stop: Sequence[str]) -> tuple[int, str] | None:
    """Earliest occurrence of any stop string in `text`: (index, stop) or None."""
    best: tuple[int, str] | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return best


def holdback(text: str, stop: Sequence[str]) -> int:
    """How many trailing characters of `text` could start a stop string.

    A streamer must not emit those yet: the next token may complete the stop.
    """
    keep = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                keep = max(keep, k)
                break
    return keep
