"""LlamaCppEngine on real GGUF files: a tiny random model (fast) and the real
default model (slow)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.engines.base import Message
from edgeagent.engines.kv_sequences import common_prefix
from edgeagent.engines.llamacpp import LlamaCppEngine
from edgeagent.errors import UserError

CHAT: list[Message] = [{"role": "user", "content": "Tell me something about the sea."}]


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(tiny_gguf, n_ctx=1024)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def real(default_model: Path) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(default_model, n_ctx=2048)
    yield engine
    engine.close()


def test_chat_template_comes_from_the_gguf(tiny: LlamaCppEngine) -> None:
    text = tiny.render(CHAT)
    assert tiny.template and "im_start" in tiny.template
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nTell me something about the sea.<|im_end|>" in text
    assert tiny.render(CHAT, prefix="Thought: ").endswith("assistant\nThought: ")


def test_batched_call_returns_n_distinct_samples(tiny: LlamaCppEngine) -> None:
    out = tiny.generate(CHAT, n=8, temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    assert len(out) == 8
    assert len({c.text for c in out}) == 8
    assert all(c.completion_tokens <= 12 for c in out)
    assert all(c.prompt_tokens == out[0].prompt_tokens for c in out)


def test_same_seed_same_text_other_seed_other_text(tiny: LlamaCppEngine) -> None:
    kw = dict(n=4, temperature=0.9, top_p=0.9, max_tokens=16)
    a = [c.text for c in tiny.generate(CHAT, seed=3, **kw)]
    b = [c.text for c in tiny.generate(CHAT, seed=3, **kw)]
    c = [c.text for c in tiny.generate(CHAT, seed=4, **kw)]
    assert a == b
    assert a != c


def test_more_samples_than_parallel_slots(tiny_gguf: Path) -> None:
    with LlamaCppEngine(tiny_gguf, n_ctx=512, max_parallel=3) as engine:
        out = engine.generate(CHAT, n=7, temperature=1.0, max_tokens=6, seed=1)
    assert len(out) == 7
    assert len({c.text for c in out}) >= 6


def test_greedy_is_deterministic_and_independent_of_cache(tiny: LlamaCppEngine) -> None:
    first = tiny.generate(CHAT, max_tokens=20)[0]
    again = tiny.generate(CHAT, max_tokens=20)[0]
    tiny.reset()
    fresh = tiny.generate(CHAT, max_tokens=20)[0]
    assert first.text == again.text == fresh.text
    assert again.timings.prompt_tokens_evaluated == 1  # everything but the last token cached
    assert fresh.timings.prompt_tokens_evaluated == fresh.prompt_tokens


def test_stop_sequences_cut_the_text(tiny: LlamaCppEngine) -> None:
    full = tiny.generate(CHAT, max_tokens=40, ignore_eos=True)[0].text
    words = full.split()
    assert len(words) > 6
    stop = " " + words[4]
    cut = full.index(stop)
    out = tiny.generate(CHAT, max_tokens=40, stop=["<never>", stop], ignore_eos=True)[0]
    assert out.text == full[:cut]
    assert out.finish_reason == "stop"
    assert out.stop == stop


def test_max_tokens_gives_length(tiny: LlamaCppEngine) -> None:
    out = tiny.generate(CHAT, max_tokens=5, ignore_eos=True)[0]
    assert out.finish_reason == "length"
    assert out.completion_tokens == 5


def test_prefix_reuse_evaluates_only_new_tokens(tiny: LlamaCppEngine) -> None:
    tiny.reset()
    p1 = tiny.tokenize(tiny.render(CHAT))
    first = tiny.generate(CHAT, max_tokens=1)[0]
    longer: list[Message] = [
        *CHAT,
        {"role": "assistant", "content": "Thought: search.\nCode:\n```py\nprint(1)\n```"},
        {"role": "user", "content": "Observation:\n1"},
    ]
    p2 = tiny.tokenize(tiny.render(longer))
    assert p2[: len(p1)] == p1
    out = tiny.generate(longer, max_tokens=1)[0]
    # the cache also holds the token generated after p1 (it may start the next turn)
    held = common_prefix(p2, p1 + (first.tokens or []))
    assert held in (len(p1), len(p1) + 1)
    assert out.timings.prompt_tokens_evaluated == len(p2) - held


def test_continuing_a_chosen_candidate_reuses_its_sequence(tiny: LlamaCppEngine) -> None:
    tiny.reset()
    cands = tiny.generate(CHAT, n=4, temperature=1.0, max_tokens=10, seed=11, ignore_eos=True)
    chosen = cands[2]
    text = tiny.render(CHAT) + chosen.text
    tokens = tiny.tokenize(text)
    out = tiny.generate(text + " and more", max_tokens=1)[0]
    # the candidate's tokens were already in the cache (sequence 2), so only the tail
    # is evaluated: far fewer than the candidate's own length
    assert out.timings.prompt_tokens_evaluated < len(tokens) - chosen.prompt_tokens + 4
    assert out.timings.prompt_tokens_evaluated <= len(tiny.tokenize(text + " and more")) - (
        chosen.prompt_tokens + chosen.completion_tokens - 2
    )


@pytest.mark.parametrize("n", [1, 3])
def test_streaming_yields_the_same_text(tiny: LlamaCppEngine, n: int) -> None:
    pieces: dict[int, list[str]] = {}
    kw = dict(n=n, temperature=0.8, max_tokens=24, seed=5, ignore_eos=True)
    plain = tiny.generate(CHAT, **kw)
    probe = plain[0].text.split()
    stop = [" " + probe[3]] if len(probe) > 4 else []
    plain = tiny.generate(CHAT, stop=stop, **kw)
    streamed = tiny.generate(
        CHAT, stop=stop, on_token=lambda i, p: pieces.setdefault(i, []).append(p), **kw
    )
    assert [c.text for c in streamed] == [c.text for c in plain]
    for i, c in enumerate(streamed):
        assert "".join(pieces.get(i, [])) == c.text
        if stop:
            assert stop[0] not in "".join(pieces.get(i, []))


def test_cancel_from_the_callback_stops_generation(tiny: LlamaCppEngine) -> None:
    seen: list[str] = []

    def on_token(i: int, piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            threading.Thread(target=tiny.cancel).start()

    out = tiny.generate(CHAT, max_tokens=200, on_token=on_token, ignore_eos=True)[0]
    assert out.finish_reason == "cancelled"
    assert out.completion_tokens < 50
    after = tiny.generate(CHAT, max_tokens=3, ignore_eos=True)[0]  # still usable
    assert after.finish_reason == "length"


def test_prompt_longer_than_context_is_a_user_error(tiny_gguf: Path) -> None:
    with LlamaCppEngine(tiny_gguf, n_ctx=64) as engine:
        with pytest.raises(UserError, match="context holds 64"):
            engine.generate("word " * 200, max_tokens=4)
        assert engine.generate("hello", max_tokens=2, ignore_eos=True)[0].completion_tokens == 2


def test_generation_stops_at_the_end_of_the_context(tiny_gguf: Path) -> None:
    with LlamaCppEngine(tiny_gguf, n_ctx=64) as engine:
        prompt = engine.tokenize("hello there")
        out = engine.generate("hello there", max_tokens=500, ignore_eos=True)[0]
    assert out.finish_reason == "length"
    assert len(prompt) + out.completion_tokens == 64


def test_bad_files_are_one_line_user_errors(tmp_path: Path, tiny_gguf: Path) -> None:
    from tiny_gguf import write_tiny_gguf

    with pytest.raises(UserError, match="not found"):
        LlamaCppEngine(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a GGUF"):
        LlamaCppEngine(text)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: 3_000_000])
    with pytest.raises(UserError, match="cannot load"):
        LlamaCppEngine(truncated)
    alien = write_tiny_gguf(tiny_gguf, tmp_path / "alien.gguf", architecture="nonsense-arch")
    with pytest.raises(UserError, match="nonsense-arch"):
        LlamaCppEngine(alien)


# -- the real default model ---------------------------------------------------


@pytest.mark.slow
def test_real_model_answers_and_batches(real: LlamaCppEngine) -> None:
    assert real.quant == "Q4_1"
    answer = real.generate(
        [{"role": "user", "content": "What is the capital of France? Answer briefly."}],
        max_tokens=30,
    )[0]
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"
    poems = real.generate(
        [{"role": "user", "content": "Write a short poem about autumn."}],
        n=8, temperature=1.0, top_p=0.95, max_tokens=24, seed=2,
    )
    assert len({c.text for c in poems}) == 8


@pytest.mark.slow
def test_real_model_seed_stop_stream_and_prefix(real: LlamaCppEngine) -> None:
    chat: list[Message] = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    kw = dict(n=2, temperature=0.4, top_p=0.8, max_tokens=60, seed=9)
    a = real.generate(chat, **kw)
    b = real.generate(chat, **kw)
    assert [c.text for c in a] == [c.text for c in b]
    out = real.generate(chat, max_tokens=80, stop=["7"])[0]
    assert "7" not in out.text and out.stop == "7" and out.text.strip()
    pieces: list[str] = []
    streamed = real.generate(chat, max_tokens=40, on_token=lambda i, p: pieces.append(p))[0]
    assert "".join(pieces) == streamed.text == real.generate(chat, max_tokens=40)[0].text
    real.reset()
    first = real.generate(chat, max_tokens=1)[0]
    more: list[Message] = [*chat, {"role": "assistant", "content": "1, 2, 3"},
                           {"role": "user", "content": "Go on."}]
    p1, p2 = real.tokenize(real.render(chat)), real.tokenize(real.render(more))
    cont = real.generate(more, max_tokens=1)[0]
    # the token generated after p1 is in the cache too ("1" here starts the next turn)
    held = common_prefix(p2, p1 + (first.tokens or []))
    assert held in (len(p1), len(p1) + 1)
    assert cont.timings.prompt_tokens_evaluated == len(p2) - held
