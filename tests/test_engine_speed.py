"""What makes voting cheap in LlamaCppEngine, on the tiny random GGUF (fast): the
straggler policy, exact prefix reuse after a generated turn, kept fixed prefixes
shared between engines, and llama.cpp's log read per thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent.engines import llama_native as native
from edgeagent.engines import prefix_store
from edgeagent.engines.base import Message, StragglerPolicy
from edgeagent.engines.llamacpp import LlamaCppEngine
from edgeagent.errors import UserError

SYSTEM = ("You are an expert assistant who can solve any task using code blobs. You will be "
          "given a task to solve as best you can. Think step by step, then write code.")


def chat(question: str) -> list[Message]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"New task:\n{question}"}]


def lcp(a: list[int], b: list[int]) -> int:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(tiny_gguf, n_ctx=2048)
    yield engine
    engine.close()


def test_policy_rules() -> None:
    quorum = StragglerPolicy(quorum=2)
    assert quorum.to_cut([], [5, 5]) == []
    assert quorum.to_cut([4], [5, 5]) == []
    assert quorum.to_cut([4, 5], [5, 5, 5]) == [0, 1, 2]
    bound = StragglerPolicy(length_bound=2.0, min_tokens=4)
    assert bound.to_cut([3], [6, 7, 8]) == [1, 2]  # bound max(6, 3 + 4) = 7
    assert bound.to_cut([10], [19, 20]) == [1]
    assert StragglerPolicy().to_cut([1, 1, 1], [50]) == []


def test_quorum_cuts_the_stragglers_where_wait_for_all_goes_on(tiny: LlamaCppEngine) -> None:
    kw = dict(n=8, temperature=1.0, max_tokens=48, stop=["e"], seed=5)
    tiny.reset()
    waited = tiny.generate(CHAT_SEA, **kw)  # type: ignore[arg-type]
    tiny.reset()
    cut = tiny.generate(CHAT_SEA, straggler=StragglerPolicy(quorum=2), **kw)  # type: ignore[arg-type]
    assert "cut" not in {c.finish_reason for c in waited}
    reasons = [c.finish_reason for c in cut]
    stops = [c.completion_tokens for c in cut if c.finish_reason == "stop"]
    assert len(stops) >= 2 and "cut" in reasons, reasons
    last_round = max(stops)
    for w, c in zip(waited, cut, strict=True):
        if c.finish_reason == "cut":  # cut in the round the quorum was reached
            assert c.completion_tokens == last_round < w.completion_tokens
            assert w.text.startswith(c.text)
        else:  # the same sample, untouched
            assert (c.text, c.finish_reason) == (w.text, w.finish_reason)
    assert sum(c.completion_tokens for c in cut) < sum(w.completion_tokens for w in waited)


CHAT_SEA: list[Message] = [{"role": "user", "content": "Tell me something about the sea."}]


@pytest.mark.parametrize("n", [1, 4])
def test_a_continued_turn_evaluates_exactly_the_tokens_never_run(tiny: LlamaCppEngine,
                                                                 n: int) -> None:
    """Evaluated == new: the chosen output's last token (sampled, never decoded
    during generation) is in the cache too, so nothing is evaluated twice."""
    tiny.reset()
    first = tiny.tokenize(tiny.render(CHAT_SEA))
    outs = tiny.generate(CHAT_SEA, n=n, temperature=0.8, max_tokens=12, seed=2, stop=["."])
    chosen = outs[-1]
    assert chosen.tokens is not None and len(chosen.tokens) == chosen.completion_tokens
    longer: list[Message] = [*CHAT_SEA, {"role": "assistant", "content": chosen.text},
                             {"role": "user", "content": "Go on."}]
    p2 = tiny.tokenize(tiny.render(longer))
    new = len(p2) - lcp(p2, first + chosen.tokens)
    out = tiny.generate(longer, max_tokens=1)[0]
    assert out.timings.prompt_tokens_evaluated == new


def test_kept_prefix_survives_other_prompts_and_is_shared(tiny_gguf: Path,
                                                          tiny: LlamaCppEngine) -> None:
    prefix_store.clear()
    tiny.reset()
    evaluated = tiny.keep_prefix(chat("What is 2 + 2?"), before="What is 2 + 2?")
    pin = tiny.tokenize(tiny.render(chat("What is 2 + 2?")).split("What is")[0])[:-1]
    assert evaluated == len(pin) > 20
    assert tiny.keep_prefix(chat("Who?"), before="Who?") == 0  # the same prefix: kept
    tiny.generate("Something else entirely, " * 5, max_tokens=4)  # sequence 0 moves on
    question = chat("How many legs has a spider?")
    p = tiny.tokenize(tiny.render(question))
    greedy = tiny.generate(question, max_tokens=8, ignore_eos=True)[0]
    assert greedy.timings.prompt_tokens_evaluated == len(p) - lcp(p, pin) < len(p) - 20

    # another engine of the same model loads the state instead of evaluating it
    with LlamaCppEngine(tiny_gguf, n_ctx=2048) as other:
        assert other.keep_prefix(chat("QQQ"), before="QQQ") == 0
        other.generate("Unrelated text first.", max_tokens=2)
        again = other.generate(question, max_tokens=8, ignore_eos=True)[0]
        assert again.timings.prompt_tokens_evaluated == len(p) - lcp(p, pin)
        assert again.text == greedy.text  # the loaded state is the evaluated one
    with LlamaCppEngine(tiny_gguf, n_ctx=2048, pin_slots=0) as plain:
        assert plain.keep_prefix(chat("QQQ"), before="QQQ") == 0
        fresh = plain.generate(question, max_tokens=8, ignore_eos=True)[0]
        assert fresh.timings.prompt_tokens_evaluated == len(p)
        assert fresh.text == greedy.text
    with pytest.raises(UserError, match="does not contain"):
        tiny.keep_prefix(chat("a"), before="not in there")


def test_llama_log_is_read_per_thread(tmp_path: Path, tiny_gguf: Path) -> None:
    from tiny_gguf import write_tiny_gguf

    alien = write_tiny_gguf(tiny_gguf, tmp_path / "alien.gguf", architecture="mamba9")
    errors: list[str] = []

    def load() -> None:
        try:
            native.load_model(alien)
        except UserError as exc:
            errors.append(str(exc))

    native.clear_log()
    worker = threading.Thread(target=load)
    worker.start()
    worker.join()
    assert errors and "unknown model architecture" in errors[0]
    # the worker's failure is not this thread's: nothing was logged here
    assert "unknown model architecture" not in native.last_error()


def test_identical_candidates_decode_one_row(tiny: LlamaCppEngine) -> None:
    """Greedy candidates never diverge: 8 of them cost one batch row per step and
    give exactly the single greedy text (a one-row batch computes what n=1 does)."""
    kw = dict(temperature=0.0, max_tokens=12, ignore_eos=True)
    tiny.reset()
    one = tiny.generate(CHAT_SEA, n=1, **kw)[0]  # type: ignore[arg-type]
    tiny.reset()
    eight = tiny.generate(CHAT_SEA, n=8, **kw)  # type: ignore[arg-type]
    prof = tiny.profile
    assert [c.text for c in eight] == [one.text] * 8
    assert prof["decoded_tokens"] == prof["decode_calls"] == 12
    assert prof["sample_tokens"] == 8 * 12
    tiny.share_rows = False
    try:
        tiny.reset()
        tiny.generate(CHAT_SEA, n=8, **kw)  # type: ignore[arg-type]
        assert tiny.profile["decoded_tokens"] == tiny.profile["sample_tokens"] == 8 * 12
    finally:
        tiny.share_rows = True


def test_candidates_share_rows_until_they_diverge_and_each_keeps_its_cache(
        tiny_gguf: Path) -> None:
    """top_k=2 at temperature 1: the 8 candidates split in two at each token, so
    they share rows for a few tokens and then go apart. Each candidate's KV
    sequence (cells shared with others, then its own) must be exactly its text:
    continuing any of them evaluates only the new tokens and gives what a fresh
    engine computes from scratch."""
    with LlamaCppEngine(tiny_gguf, n_ctx=2048, top_k=2) as eng:
        first = eng.tokenize(eng.render(CHAT_SEA))
        outs = eng.generate(CHAT_SEA, n=8, temperature=1.0, max_tokens=10, ignore_eos=True,
                            seed=3)
        prof = eng.profile
        assert prof["sample_tokens"] == 8 * 10
        assert 10 < prof["decoded_tokens"] < prof["sample_tokens"]  # shared, then split
        assert len({tuple(c.tokens or []) for c in outs}) > 1
        for k in (0, 5, 7):
            chosen = outs[k]
            longer: list[Message] = [*CHAT_SEA, {"role": "assistant", "content": chosen.text},
                                     {"role": "user", "content": "Go on."}]
            p2 = eng.tokenize(eng.render(longer))
            new = len(p2) - lcp(p2, first + list(chosen.tokens or []))
            cont = eng.generate(longer, max_tokens=6, ignore_eos=True)[0]
            assert cont.timings.prompt_tokens_evaluated == new < len(p2) - len(first)
            with LlamaCppEngine(tiny_gguf, n_ctx=2048, pin_slots=0) as fresh:
                again = fresh.generate(longer, max_tokens=6, ignore_eos=True)[0]
                assert again.timings.prompt_tokens_evaluated == len(p2)
                assert again.text == cont.text
            # restore the candidates' sequences for the next k
            outs_again = eng.generate(CHAT_SEA, n=8, temperature=1.0, max_tokens=10,
                                      ignore_eos=True, seed=3)
            assert [c.tokens for c in outs_again] == [c.tokens for c in outs]
