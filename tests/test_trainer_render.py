"""Training text against inference text, with SmolLM2's real tokenizer and chat template:
the rendered training chat of a generated trajectory is, byte for byte and token for
token, what the agent loop sends the student's GGUF at each step; the trained tokens
decode to exactly the assistant turns (a tokenizer whose offsets trim spaces is
refused); examples past `--max-len` are skipped with a warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")
pytest.importorskip("peft")

import transformers
from test_trainer_paper import SCRIPT, _generate
from test_trainer_torch import tokenizer_dir

from edgeagent.agent.trajectory import append_records
from trainer.examples import load_examples
from trainer.gold import gold_trajectory
from trainer.render import (
    TrainedTextMismatch,
    assistant_spans,
    render_messages,
)


@pytest.fixture(scope="module")
def tokenizer(default_model: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(tokenizer_dir(default_model))


@pytest.fixture(scope="module")
def gold_records(shared_data: Path) -> list[Any]:
    path = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    rows = [json.loads(ln) for ln in path.read_text("utf-8").split("\n")[:4]]
    return [gold_trajectory(r, task_id=f"g{i}") for i, r in enumerate(rows)]


@pytest.mark.slow
def test_training_text_is_the_inference_prompt(tokenizer: Any, default_model: Path,
                                               tmp_path: Path) -> None:
    from edgeagent.engines.llamacpp import LlamaCppEngine

    rec = _generate(tmp_path, SCRIPT)
    full, spans = assistant_spans(tokenizer, rec.messages)
    ids = render_messages(tokenizer, rec.messages).input_ids
    assert len(spans) == len(rec.steps) == 4
    with LlamaCppEngine(default_model, n_ctx=4096) as engine:
        for k, (start, end) in enumerate(spans):
            prompt = engine.render(rec.messages[: 2 + 2 * k])  # what step k+1 is sent
            assert full[:start] == prompt
            prompt_ids = engine.tokenize(prompt)
            assert ids[: len(prompt_ids)] == prompt_ids
            assert full[start:end] == rec.steps[k].text + "<end_code><|im_end|>"


def test_trained_tokens_decode_to_each_turn(tokenizer: Any, gold_records: list[Any]) -> None:
    for rec in gold_records:
        render_messages(tokenizer, rec.messages)  # the check passes on a sound tokenizer


class TrimmingOffsets:
    """The real tokenizer, but its offsets leave out whitespace (as some tokenizers do)."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tok, name)

    def __call__(self, text: str, **kw: Any) -> dict[str, Any]:
        enc = self.tok(text, **kw)
        offsets = []
        for s, e in enc["offset_mapping"]:
            while s < e and text[s].isspace():
                s += 1
            offsets.append((s, e))
        return {"input_ids": enc["input_ids"], "offset_mapping": offsets}


def test_offsets_that_trim_spaces_are_refused(tokenizer: Any, gold_records: list[Any]) -> None:
    with pytest.raises(TrainedTextMismatch, match="assistant turn 1 decode to"):
        render_messages(TrimmingOffsets(tokenizer), gold_records[0].messages, example_id="g0")


def test_examples_past_max_len_are_skipped_with_a_warning(
    tokenizer: Any, shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "benchmarks" / "train" / "gsm8k_train_7473.jsonl"
    rows = [json.loads(ln) for ln in path.read_text("utf-8").split("\n")[:3]]
    long = dict(rows[0], question=rows[0]["question"] + " Background:" + " filler" * 600)
    records = [gold_trajectory(r, task_id=f"g{i}") for i, r in enumerate(rows)]
    records.append(gold_trajectory(long, task_id="long"))
    first = render_messages(tokenizer, records[0].messages)
    start = next(i for i, x in enumerate(first.labels) if x != -100)
    data = tmp_path / "t.jsonl"
    append_records(data, records)
    warnings: list[str] = []
    kept = load_examples(tokenizer, data, start + 40, warn=warnings.append)
    assert [r.id for r in kept] == ["g0", "g1", "g2"] and all(r.truncated for r in kept)
    assert warnings == [f"skipped 1 of 4 examples whose assistant turns all start after "
                        f"--max-len {start + 40} (e.g. 'long')"]
    append_records(tmp_path / "long.jsonl", records[3:])
    from edgeagent.errors import UserError

    with pytest.raises(UserError, match="raise --max-len"):
        load_examples(tokenizer, tmp_path / "long.jsonl", start + 40)
