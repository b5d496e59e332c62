"""The work items of `BatchedHost` and the `Engine` each of its slots hands out.

`Work` is one `generate` call of one request (its prompt tokens, sampling
settings, samples and result); `Sample` one sequence being decoded for it.
`SlotEngine.generate` checks the call, tokenizes the prompt and hands a `Work`
to the host's scheduler thread (`Scheduler`), then waits for it. Not covered: the scheduler
(`batched`).
"""

from __future__ import annotations

import codecs
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeagent.engines.base import Completion, FinishReason, Message, TokenCallback
from edgeagent.errors import UserError


class Scheduler(Protocol):
    """What a slot engine needs of its host (`batched.BatchedHost`)."""

    name: str
    n_ctx: int
    votes_max: int

    def tokens_for(self, messages: Sequence[Message] | str, prefix: str | None) -> list[int]:
        ...

    def prefix_tokens(self, messages: Sequence[Message] | str, before: str | None) -> list[int]:
        ...

    def submit(self, work: Work) -> list[Completion]: ...


@dataclass
class Sample:
    seq: int
    sampler: Any
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    text: str = ""
    emitted: int = 0
    n_tokens: int = 0
    logit: int = -1  # batch index of this sample's logits in the last decode, -1: none
    feed: int | None = None  # sampled token to put in the next batch
    drawn_from: int = -1  # batch index of the logits `feed` was sampled from
    finish: FinishReason | None = None
    stop: str | None = None


@dataclass
class Work:
    """One `generate` call of one request."""

    slot: int
    tokens: list[int]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]
    seed: int
    on_token: TokenCallback | None
    cancel: threading.Event
    ignore_eos: bool = False
    pin: list[int] = field(default_factory=list)  # the prompt's fixed start, to keep
    done: threading.Event = field(default_factory=threading.Event)
    fed: int = 0  # prompt tokens in the KV cache
    evaluated: int = 0
    samples: list[Sample] = field(default_factory=list)
    result: list[Completion] | None = None
    error: BaseException | None = None
    t0: float = field(default_factory=time.perf_counter)
    t1: float = 0.0

    @property
    def prefilling(self) -> bool:
        return not self.samples


class SlotEngine:
    """The `Engine` of one slot: `generate` hands a work item to the scheduler."""

    def __init__(self, host: Scheduler, slot: int, cancel: threading.Event) -> None:
        self.host = host
        self.slot = slot
        self.cancel_event = cancel
        self.name = host.name
        self.pin: list[int] = []

    def keep_prefix(self, prompt: Sequence[Message] | str, *, before: str | None = None) -> int:
        """Ask the host to keep the prompt's start up to `before` once a request has
        evaluated it (see `batched`). Returns 0: its tokens are counted by the
        `generate` that evaluates them."""
        self.pin = self.host.prefix_tokens(prompt, before)
        return 0

    def generate(self, messages: Sequence[Message] | str, *, n: int = 1,
                 temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 512,
                 stop: Sequence[str] = (), seed: int | None = None, prefix: str | None = None,
                 on_token: TokenCallback | None = None,
                 ignore_eos: bool = False) -> list[Completion]:
        host = self.host
        if not 1 <= n <= host.votes_max:
            raise UserError(f"n must be from 1 to {host.votes_max} on this server")
        if max_tokens < 1:
            raise UserError("max_tokens must be at least 1")
        tokens = host.tokens_for(messages, prefix)
        if not tokens:
            raise UserError("the prompt is empty")
        if len(tokens) >= host.n_ctx:
            raise UserError(f"the prompt is {len(tokens)} tokens but the context holds "
                            f"{host.n_ctx}; shorten it or raise --n-ctx")
        seed = random.randrange(1 << 31) if seed is None else seed
        work = Work(slot=self.slot, tokens=tokens, n=n, temperature=temperature, top_p=top_p,
                     max_tokens=max_tokens, stop=list(stop), seed=seed, on_token=on_token,
                     cancel=self.cancel_event, ignore_eos=ignore_eos, pin=self.pin)
        return host.submit(work)

    def close(self) -> None:
        pass
