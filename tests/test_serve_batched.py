"""The batched engine host on the real default model: concurrent requests decode
in one batch, votes, KV prefix sharing within and across requests, and
per-request cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.engines.base import Completion, Message
from edgeagent.serve.batched import BatchedHost

pytestmark = pytest.mark.slow
SYSTEM: Message = {"role": "system", "content": "You are a helpful assistant. " * 20}


def _chat(q: str) -> list[Message]:
    return [SYSTEM, {"role": "user", "content": q}]


@pytest.fixture(scope="module")
def host(default_model: Path) -> Iterator[BatchedHost]:
    h = BatchedHost(default_model, name="m", slots=2, n_ctx=2048, threads=1, max_votes=3)
    yield h
    h.close()


def test_concurrent_requests_decode_in_one_batch(host: BatchedHost) -> None:
    """Two clients' tokens share decode calls. (Their text is not compared with a lone
    run: a different batch shape moves logits in the last digits, and this model has
    near-ties, e.g. 'Le' 25.07 / 'The' 25.01 for the capital of France.)"""
    questions = ["Name three colours.", "Tell me about the sea."]
    got: dict[int, Completion] = {}
    leases = [host.lease() for _ in questions]
    engines = [lease.__enter__() for lease in leases]
    tokens0, decodes0 = host.counter.value, host.decodes

    def ask(i: int) -> None:
        got[i] = engines[i].generate(_chat(questions[i]), max_tokens=24, ignore_eos=True)[0]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for lease in leases:
        lease.__exit__(None, None, None)
    assert [got[0].completion_tokens, got[1].completion_tokens] == [24, 24]
    assert got[0].text and got[1].text
    assert host.counter.value - tokens0 == 48
    # 48 sampled tokens (+ 2 prefills) in far fewer than 48 decodes: they went together
    assert host.decodes - decodes0 < 40


def _cells_held(host: BatchedHost, slot: int) -> list[int]:
    """The highest position each of the slot's sequences holds in the real cache (-1:
    none)."""
    first = slot * host.votes_max
    return [int(host._llama.llama_memory_seq_pos_max(host._mem, s))
            for s in range(first, first + host.votes_max)]


def _wait_tidied(host: BatchedHost, count: int) -> None:
    deadline = time.monotonic() + 10
    while host.tidied < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_released_slots_drop_interleaved_cells_and_keep_contiguous_ones(
        host: BatchedHost) -> None:
    """Two requests that decoded together leave interleaved cells: when their leases
    end, the host drops both slots' sequences. A request that ran alone keeps its
    cells for the next request's reuse (a chat's next turn)."""
    with host.lease() as e:  # the scheduler has handled earlier tests' releases after this
        e.generate("Hi", max_tokens=1)
    tidied0 = host.tidied
    with host.lease() as a, host.lease() as b:
        slots = [a._engine.slot, b._engine.slot]  # type: ignore[attr-defined]
        out: dict[str, Completion] = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "b", b.generate(_chat("Name a river."), max_tokens=16, ignore_eos=True)[0]))
        t.start()
        out["a"] = a.generate(_chat("Name a mountain."), max_tokens=16, ignore_eos=True)[0]
        t.join()
        assert all(max(_cells_held(host, s)) > 0 for s in slots)  # held while leased
    _wait_tidied(host, tidied0 + 2)
    assert host.tidied == tidied0 + 2
    assert all(_cells_held(host, s) == [-1] * host.votes_max for s in slots)

    with host.lease() as c:
        alone = c._engine.slot  # type: ignore[attr-defined]
        first = c.generate(_chat("Name a lake."), max_tokens=8, ignore_eos=True)[0]
    with host.lease() as d:
        turn = [*_chat("Name a lake."), {"role": "assistant", "content": first.text},
                {"role": "user", "content": "Another."}]
        # d may get the other slot; the cached conversation is shared across slots
        again = d.generate(turn, max_tokens=2)[0]
    time.sleep(0.2)  # the scheduler has seen both releases: nothing was dropped
    assert host.tidied == tidied0 + 2 and max(_cells_held(host, alone)) > 0
    assert again.timings is not None
    assert 0 < again.timings.prompt_tokens_evaluated <= again.prompt_tokens - first.prompt_tokens


def test_votes_and_prefix_reuse_within_and_across_requests(host: BatchedHost) -> None:
    with host.lease() as a:
        first = a.generate(_chat("Count to five."), n=3, temperature=0.8, seed=1,
                           max_tokens=16)
        assert len(first) == 3 and all(c.completion_tokens > 0 for c in first)
        full = first[0].prompt_tokens
        longer = [*_chat("Count to five."), {"role": "assistant", "content": first[2].text},
                  {"role": "user", "content": "Again."}]
        again = a.generate(longer, max_tokens=4)[0]
        # the chosen candidate's sequence is reused: only the new turn is evaluated
        assert 0 < again.timings.prompt_tokens_evaluated <= again.prompt_tokens - full
    with host.lease() as b:
        other = b.generate(_chat("Count to six."), max_tokens=4)[0]
    # another request's system prompt is shared, not evaluated again
    assert 0 < other.timings.prompt_tokens_evaluated < other.prompt_tokens // 2


def test_equal_votes_share_one_row(host: BatchedHost) -> None:
    """Greedy votes never diverge: their tokens ride in one row (one KV cell for
    all three sequences), and each sequence still holds its whole text."""
    saved0 = host.rows_saved
    with host.lease() as a:
        votes = a.generate(_chat("Name a fruit."), n=3, temperature=0.0, max_tokens=12,
                           ignore_eos=True)
        assert len({c.text for c in votes}) == 1
        assert host.rows_saved - saved0 == 2 * 11  # the last token is never fed back
        longer = [*_chat("Name a fruit."), {"role": "assistant", "content": votes[2].text},
                  {"role": "user", "content": "Another."}]
        again = a.generate(longer, max_tokens=4)[0]
        assert 0 < again.timings.prompt_tokens_evaluated <= again.prompt_tokens - \
            votes[0].prompt_tokens


def test_cancel_stops_only_that_request(host: BatchedHost) -> None:
    with host.lease() as a, host.lease() as b:
        seen: list[str] = []

        def on_token(i: int, piece: str) -> None:
            seen.append(piece)
            if len(seen) == 5:
                a.cancel()

        out: dict[str, Completion] = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "b", b.generate(_chat("Tell a story."), max_tokens=40, ignore_eos=True)[0]))
        t.start()
        got = a.generate(_chat("Tell a long story."), max_tokens=200, on_token=on_token,
                         ignore_eos=True)[0]
        t.join()
    assert got.finish_reason == "cancelled" and len(seen) == 5
    assert out["b"].finish_reason == "length" and out["b"].completion_tokens == 40


def _prompt_cost(engine: object, chat: list[Message]) -> tuple[int, int]:
    done = engine.generate(chat, max_tokens=2, ignore_eos=True)[0]  # type: ignore[attr-defined]
    assert done.timings is not None
    return done.timings.prompt_tokens_evaluated, done.prompt_tokens


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "not_kept"])
def test_a_kept_prefix_survives_another_prompt_in_its_slot(host: BatchedHost,
                                                          kept: bool) -> None:
    """The agent keeps its system prompt (`keep_prefix`); after the slot ran another
    prompt (the fallback's), the next request evaluates only its own tokens. Without
    the keep, the same sequence of requests evaluates the system prompt again."""
    system: Message = {"role": "system",
                       "content": f"Answer in one word, {'kept' if kept else 'plain'}. " * 25}
    first = [system, {"role": "user", "content": "Name a colour."}]
    again = [system, {"role": "user", "content": "Name a fruit."}]
    pinned0 = host.pinned
    with host.lease() as a:
        if kept:
            assert a.keep_prefix(first, before="Name a colour.") == 0
        _prompt_cost(a, first)
        _prompt_cost(a, _chat("Something else entirely."))
    with host.lease() as b:
        evaluated, total = _prompt_cost(b, again)
    pin = len(host.prefix_tokens(first, "Name a colour."))
    assert pin > 100
    if kept:
        assert host.pinned == pinned0 + 1
        assert evaluated == total - pin
    else:
        assert host.pinned == pinned0
        assert evaluated > total - pin + 100
