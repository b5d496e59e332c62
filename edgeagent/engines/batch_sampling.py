"""Sampling N sequences of one prompt together, one `llama_decode` per step.

`BatchSampler.run` is the decode loop of `LlamaCppEngine.generate`: each live
sample draws its next token with its own native sampler chain (seed + index),
its text is decoded, checked for stop strings and streamed with hold-back, and
the tokens of every live sample go into one batch, one row per distinct
history: samples whose histories are still equal (they read the same logits
and drew the same token) share a row and so a KV cell (`_rows`); with the
peaked distributions of voting (temperature 0.4, top-p 0.8) candidates often
agree for long stretches, and those stretches are decoded once. A sample ends on an
end-of-generation token, a stop string, `max_tokens` or the context's end; its
last token then rides along in the next batch without logits, so its sequence
holds everything it generated (the next prompt, which repeats the chosen
output, evaluates only tokens the model never ran). With a `StragglerPolicy`
the samples still decoding are cut once the policy says the batch is decided.
Where the time went is returned as a profile: `sample_s` (native samplers),
`decode_s` (`llama_decode`), `python_s` (the rest of the loop), counts of
decode calls, decoded rows (`decoded_tokens`) and sample tokens they carried.

Not covered: putting the prompt in the cache (`kv_sequences`), the public API
(`llamacpp`).
"""

from __future__ import annotations

import codecs
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edgeagent.engines import llama_native as native
from edgeagent.engines.base import FinishReason, StragglerPolicy, TokenCallback, find_stop, holdback
from edgeagent.engines.kv_sequences import KVSequences


@dataclass
class Sample:
    """Decoding state of one sequence."""

    seq: int
    sampler: Any
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0
    n_tokens: int = 0
    logit_index: int = -1
    finish: FinishReason | None = None
    stop: str | None = None



class BatchSampler:
    """The decode loop over the sample sequences of one context."""

    def __init__(self, llama_cpp: Any, kv: KVSequences, vocab: Any, detok: Any, *,
                 n_ctx: int, top_k: int, share: bool = True) -> None:
        self._llama = llama_cpp
        self.kv = kv
        self.ctx = kv.ctx
        self.vocab = vocab
        self.detok = detok
        self.n_ctx = n_ctx
        self.top_k = top_k
        self.share = share  # samples with equal histories decode one row (`_rows`)

    def run(
        self,
        tokens: list[int],
        count: int,
        first_index: int,
        logit_index: int,
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: list[str],
        seed: int,
        on_token: TokenCallback | None,
        ignore_eos: bool,
        straggler: StragglerPolicy | None,
        cancel: threading.Event,
    ) -> tuple[list[Sample], dict[str, float]]:
        """Sample `count` continuations of `tokens` (in sequences 0..count-1, the
        prompt's logits at `logit_index`); returns the samples and the profile."""
        llama_cpp = self._llama
        kv = self.kv
        samples = [
            Sample(
                seq=s,
                sampler=native.sampler_chain(
                    temperature=temperature, top_p=top_p, top_k=self.top_k,
                    seed=seed + first_index + s,
                ),
                logit_index=logit_index,
            )
            for s in range(count)
        ]
        max_stop = max((len(s) for s in stop), default=0)
        live = list(samples)
        prof = {"sample_s": 0.0, "decode_s": 0.0, "python_s": 0.0, "decode_calls": 0.0,
                "decoded_tokens": 0.0, "sample_tokens": 0.0}
        stopped: list[int] = []  # token counts of samples that ended on a stop
        try:
            while live:
                if cancel.is_set():
                    for smp in live:
                        smp.finish = "cancelled"
                    break
                to_decode: list[tuple[Sample, int]] = []
                tails: list[tuple[Sample, int]] = []  # last tokens of finished samples
                ts = time.perf_counter()
                for smp in live:
                    ta = time.perf_counter()
                    tok = llama_cpp.llama_sampler_sample(smp.sampler, self.ctx, smp.logit_index)
                    prof["sample_s"] += time.perf_counter() - ta
                    smp.n_tokens += 1
                    smp.tokens.append(tok)
                    if not ignore_eos and llama_cpp.llama_vocab_is_eog(self.vocab, tok):
                        smp.finish = "stop"
                        stopped.append(smp.n_tokens)
                        tails.append((smp, tok))
                        continue
                    before = len(smp.text)
                    smp.text += smp.decoder.decode(self.detok.piece(tok))
                    if stop:
                        hit = find_stop(smp.text[max(0, before - max_stop):], stop)
                        if hit is not None:
                            cut = max(0, before - max_stop) + hit[0]
                            smp.text = smp.text[:cut]
                            smp.finish, smp.stop = "stop", hit[1]
                    if smp.finish is None and (
                        smp.n_tokens >= max_tokens or len(tokens) + smp.n_tokens >= self.n_ctx
                    ):
                        smp.finish = "length"
                    if on_token is not None:
                        _stream(smp, first_index, stop, on_token)
                    if smp.finish is None:
                        to_decode.append((smp, tok))
                    else:
                        if smp.finish == "stop":
                            stopped.append(smp.n_tokens)
                        if len(tokens) + smp.n_tokens < self.n_ctx:
                            tails.append((smp, tok))
                if straggler is not None and to_decode:
                    cut_now = set(straggler.to_cut(stopped,
                                                   [smp.n_tokens for smp, _ in to_decode]))
                    for j in sorted(cut_now):
                        smp = to_decode[j][0]
                        smp.finish = "cut"
                        if on_token is not None:
                            _stream(smp, first_index, stop, on_token)
                    to_decode = [x for j, x in enumerate(to_decode) if j not in cut_now]
                td = time.perf_counter()
                prof["python_s"] += td - ts
                if not to_decode and not tails:
                    break
                rows = _rows(to_decode, tails, self.share)
                # A finished sample's last token rides along without logits, so its
                # sequence holds all it generated: the next prompt, which repeats the
                # chosen output, then evaluates only tokens the model has never run.
                batch = kv.batch
                for j, row in enumerate(rows):
                    batch.token[j] = row.token
                    batch.pos[j] = len(tokens) + row.members[0].n_tokens - 1
                    batch.n_seq_id[j] = len(row.members)
                    for m, smp in enumerate(row.members):
                        batch.seq_id[j][m] = smp.seq
                        smp.logit_index = j
                    batch.logits[j] = 1 if row.wants_logits else 0
                batch.n_tokens = len(rows)
                tc = time.perf_counter()
                kv.decode()
                te = time.perf_counter()
                prof["decode_s"] += te - tc
                prof["decode_calls"] += 1
                prof["decoded_tokens"] += len(rows)
                prof["sample_tokens"] += len(to_decode) + len(tails)
                prof["python_s"] += tc - td
                for smp, tok in to_decode + tails:
                    kv.tokens[smp.seq].append(tok)
                live = [smp for smp, _ in to_decode]
        finally:
            for smp in samples:
                llama_cpp.llama_sampler_free(smp.sampler)
        prof["python_s"] -= prof["sample_s"]
        return samples, prof


@dataclass
class _Row:
    """One token of the next batch, shared by the samples whose histories are equal."""

    token: int
    members: list[Sample]
    wants_logits: bool


def _rows(to_decode: list[tuple[Sample, int]], tails: list[tuple[Sample, int]],
          share: bool) -> list[_Row]:
    """Batch rows for this step: samples that read the same logits row (equal
    histories so far) and drew the same token still have equal histories, so
    they share one row, i.e. one KV cell tagged with all their sequences
    (a unified cache allows it). Samples drawn from one distribution stay
    independent: each has its own sampler and seed; only the identical forward
    pass is done once. Rows of samples still decoding come first. `share`
    False gives every sample its own row (what `bench engine` compares)."""
    rows: dict[tuple[int, int], _Row] = {}
    for smp, tok in to_decode:
        key = (smp.logit_index, tok) if share else (-1 - smp.seq, tok)
        if key in rows:
            rows[key].members.append(smp)
        else:
            rows[key] = _Row(tok, [smp], True)
    tail_rows: list[_Row] = []
    for smp, tok in tails:
        key = (smp.logit_index, tok) if share else (-1 - smp.seq, tok)
        if key in rows:
            rows[key].members.append(smp)
        else:
            row = _Row(tok, [smp], False)
            rows[key] = row
            tail_rows.append(row)
    return [r for r in rows.values() if r.wants_logits] + tail_rows


def _stream(smp: Sample, first_index: int, stop: list[str], on_token: TokenCallback) -> None:
    safe = len(smp.text) if smp.finish is not None else len(smp.text) - holdback(smp.text, stop)
    if safe > smp.emitted:
        on_token(first_index + smp.seq, smp.text[smp.emitted : safe])
        smp.emitted = safe
