"""`BatchedHost`: one model whose concurrent requests decode together in one llama batch.

Each `--parallel` slot owns `votes_max` KV sequences of one shared context
(unified KV cache). A request's `generate` call becomes a work item for one
scheduler thread, which per iteration builds ONE `llama_batch` holding the
next token of every live sample of every request (several seq ids, as voting
does within one request) plus as many prompt tokens of newly arrived requests
as still fit (`PREFILL_CHUNK` per iteration: a long prompt is evaluated in
chunks, so running requests keep streaming and a cancel waits at most one
chunk), calls `llama_decode` once, then samples every sample
with its own native sampler chain. So four clients' steps cost one decode per
token instead of four. A request's votes whose tokens are still equal share
one row, as in `engines.batch_sampling`.

KV reuse: a new prompt is matched against every sequence's tokens; its own
first sequence keeps its common prefix and only the rest is evaluated. A
longer match elsewhere (a candidate the vote chose, or ANOTHER request's
sequence holding the same system prompt) is shared with `llama_memory_seq_cp`
(cell tags in the unified cache, no tensor copy), so a new client does not
prefill the system prompt again. Clients that start together: a prompt whose
prefix another request is prefilling right now waits for that prefill rather
than evaluating the same tokens a second time.

Kept prefixes: the agent names its fixed prompt starts (`keep_prefix`: the
agent's system prompt, the fallback's); once a request has prefilled one, the
host copies it into one of `pins` reserved sequences (least recently used
replaced, within `PIN_CELLS` KV cells), so it survives the
slot's next, different prompt and no later request evaluates it again.

Interleaved cells: a call that decodes several slots' tokens gives them side-by-side
cells, so concurrent conversations end up interleaved in the cache. When such a
slot's lease ends, its sequences are dropped (`_tidy`): kept, they would scatter the
next prompts into the gaps and make prompt attention pay for every neighbour. A
slot that ran alone keeps its cells for the next request's reuse.

Cancellation: the request's cancel flag is checked every iteration, and an
exception from its `on_token` (the `RequestEngine` guard) also ends it; its
samples finish as `"cancelled"` and nothing more is decoded for it.
A decode failure (the shared context is full) fails the requests in that
batch with a one-line `UserError` and clears the cache.

Not covered: prompt-prefill priority tuning, GPU offload, LoRA hot-swap.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeagent.engines import llama_native as native
from edgeagent.engines.base import (
    Completion,
    FinishReason,
    Message,
    Timings,
    find_stop,
    holdback,
)
from edgeagent.engines.chat_template import render_chat, text_before
from edgeagent.engines.kv_sequences import common_prefix
from edgeagent.errors import UserError
from edgeagent.serve.batch_work import Sample, SlotEngine, Work
from edgeagent.serve.hosts import RequestEngine, TokenCounter

PREFILL_CHUNK = 128  # prompt tokens per decode: bounds how long a cancel or a decode waits
PIN_CELLS = 4096  # KV cells reserved for kept prefixes (all pins together)


class BatchedHost:
    """The `EngineHost` of `--engines batched` (see the module docstring)."""

    def __init__(self, path: Path, *, name: str, slots: int, n_ctx: int, threads: int,
                 max_votes: int = 8, n_batch: int = 512, top_k: int = 40, pins: int = 4,
                 lora: str | None = None, lora_scale: float = 1.0) -> None:
        self.name = name
        self.kind = "batched"
        self.engine_type = "BatchedHost"
        self.counter = TokenCounter()
        self.path = Path(path)
        self.slots = slots
        self.votes_max = max(1, max_votes)
        self.top_k = top_k
        self._llama = native.init_backend(False)
        llama = self._llama
        self._model = native.load_model(self.path)
        self._ctx: Any = None
        self._batch: Any = None
        self._adapter: Any = None
        try:
            self._vocab = llama.llama_model_get_vocab(self._model)
            n_train = int(llama.llama_model_n_ctx_train(self._model))
            self.n_ctx = min(n_ctx, n_train) if n_train > 0 else n_ctx  # per request
            self._pin_first = slots * self.votes_max
            self.pins = max(0, pins)
            # KV cells the pins may hold: the teacher-style system prompt is ~2,400 tokens
            self.pin_budget = min(self.n_ctx, PIN_CELLS) if self.pins else 0
            n_seq = self._pin_first + self.pins
            self.n_batch = max(n_batch, n_seq)
            params = llama.llama_context_default_params()
            params.n_ctx = self.n_ctx * slots + self.pin_budget
            params.n_batch = self.n_batch
            params.n_ubatch = self.n_batch
            params.n_seq_max = n_seq
            params.n_threads = threads
            params.n_threads_batch = threads
            params.kv_unified = True
            params.no_perf = True
            self._ctx = llama.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise UserError(f"cannot create a context for {self.path.name} "
                                f"({slots} slots): {native._last_error()}")
            if lora is not None:
                self._adapter = native.load_lora(self._model, Path(lora))
                native.set_lora(self._ctx, self._adapter, lora_scale)
            self._mem = llama.llama_get_memory(self._ctx)
            self._batch = llama.llama_batch_init(self.n_batch, 0, self.votes_max)
        except BaseException:
            self.close()
            raise
        self.threads = threads
        self._detok = native.Detokenizer(self._vocab)
        self.template = native.chat_template(self._model)
        self.bos_text = native.token_text(self._vocab, llama.llama_vocab_bos(self._vocab))
        self.eos_text = native.token_text(self._vocab, llama.llama_vocab_eos(self._vocab))
        self._add_bos = bool(llama.llama_vocab_get_add_bos(self._vocab))
        self._records: list[list[int]] = [[] for _ in range(n_seq)]
        # slots whose cells were allocated in calls shared with another slot (interleaved
        # in the unified cache), and slots whose lease ended, for the scheduler to tidy
        self._mixed = [False] * slots
        self._released: list[int] = []
        self._pin_used = [0.0] * self.pins
        self._free: queue.Queue[int] = queue.Queue()
        for s in range(slots):
            self._free.put(s)
        self._cv = threading.Condition()
        self._incoming: list[Work] = []
        self._active: list[Work] = []
        self._waiting: list[Work] = []  # held back until a shared prefix is in the cache
        self._closing = False
        self.decodes = 0  # llama_decode calls (fewer than tokens when requests share them)
        self.rows_saved = 0  # sampled tokens that rode in another vote's row
        self.pinned = 0  # prefixes copied into a pinned sequence
        self.tidied = 0  # released slots whose interleaved cells were dropped
        self._stats = {"decode_s": 0.0, "idle_s": 0.0, "decode_rows": 0, "prefill_tokens": 0,
                       "prompt_calls_s": 0.0, "row_calls_s": 0.0, "row_calls_rows": 0}
        self._thread = threading.Thread(target=self._run, name="edgeagent-batch", daemon=True)
        self._thread.start()

    # -- EngineHost ----------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self) -> Iterator[RequestEngine]:
        slot = self._free.get()
        cancel = threading.Event()
        try:
            yield RequestEngine(SlotEngine(self, slot, cancel), self.counter, self.name,
                                cancel_event=cancel, count=False)
        finally:
            with self._cv:  # before the slot can be leased again: the scheduler sees it first
                self._released.append(slot)
                self._cv.notify()
            self._free.put(slot)

    def stats(self) -> dict[str, float]:
        """Scheduler totals so far: seconds in `llama_decode` and waiting for work, batch
        rows of sampled tokens, prompt tokens evaluated, `llama_decode` calls; and the
        decode seconds split between calls that carried prompt tokens (`prompt_calls_s`)
        and calls of sampled rows only (`row_calls_s`, with their `row_calls_rows`)."""
        return {**self._stats, "decodes": self.decodes}

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.name, "engines": "batched",
                "slots": self.slots, "n_ctx_per_request": self.n_ctx, "threads": self.threads,
                "votes_max": self.votes_max}

    def close(self) -> None:
        if getattr(self, "_thread", None) is not None and self._thread.is_alive():
            with self._cv:
                self._closing = True
                self._cv.notify_all()
            self._thread.join(timeout=30)
        llama = self._llama
        if self._batch is not None:
            llama.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama.llama_free(self._ctx)
            self._ctx = None
        if self._adapter:
            llama.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None

    # -- request side ----------------------------------------------------------------

    def _render(self, messages: Sequence[Message] | str, prefix: str | None = None) -> str:
        if isinstance(messages, str):
            return messages + (prefix or "")
        return render_chat(self.template, messages, bos_token=self.bos_text,
                           eos_token=self.eos_text, prefix=prefix)

    def _tokenize(self, text: str) -> list[int]:
        add = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return native.tokenize(self._vocab, text, add_special=add)

    def tokens_for(self, messages: Sequence[Message] | str, prefix: str | None) -> list[int]:
        return self._tokenize(self._render(messages, prefix))

    def prefix_tokens(self, messages: Sequence[Message] | str, before: str | None) -> list[int]:
        """The tokens of the prompt's start up to `before` (all but the last one, which
        may merge with the text after it): what `keep_prefix` asks to keep."""
        return self._tokenize(text_before(self._render(messages), before))[:-1]

    def submit(self, work: Work) -> list[Completion]:
        with self._cv:
            if self._closing:
                raise UserError("the server is shutting down")
            self._incoming.append(work)
            self._cv.notify()
        work.done.wait()
        if work.error is not None:
            raise work.error
        assert work.result is not None
        return work.result

    # -- scheduler thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                idle = time.perf_counter()
                while not (self._incoming or self._active or self._released
                           or self._closing):
                    self._cv.wait()
                self._stats["idle_s"] += time.perf_counter() - idle
                if self._closing:
                    for w in self._incoming + self._waiting + self._active:
                        self._fail(w, UserError("the server is shutting down"))
                    return
                new, self._incoming = self._incoming, []
                released, self._released = self._released, []
            try:
                for slot in released:
                    self._tidy(slot)
                self._waiting += new
                for w in list(self._waiting):
                    if w.cancel.is_set() or not self._worth_waiting(w):
                        self._waiting.remove(w)
                        self._active.append(w)
                        self._admit(w)
                for w in list(self._active):
                    if w.cancel.is_set():
                        self._finish_all(w, "cancelled")
                if self._active:
                    self._iterate()
            except BaseException as exc:  # a bug or a failed decode: fail what is in flight
                self._llama.llama_memory_clear(self._mem, True)
                self._records = [[] for _ in self._records]
                self._pin_used = [0.0] * self.pins
                self._mixed = [False] * self.slots
                err = exc if isinstance(exc, UserError) else UserError(
                    f"generation failed: {type(exc).__name__}: {exc}")
                for w in self._active + self._waiting:
                    self._fail(w, err)
                self._active, self._waiting = [], []

    def _tidy(self, slot: int) -> None:
        """A slot's lease ended. If its cells lie interleaved with other slots' (it
        decoded in shared calls), drop its sequences: a later prompt would be placed
        in the gaps between the other conversations' cells, and prompt attention
        (llama.cpp's tiled kernel skips only 64-cell tiles no query row may see) then
        pays for theirs too: ~30% slower prompts measured. A slot that ran alone
        keeps its cells, contiguous, for the next request to reuse (a chat's next
        turn); kept prefixes live in the pins either way."""
        if not self._mixed[slot]:
            return
        first = slot * self.votes_max
        self._drop(range(first, first + self.votes_max))
        self._mixed[slot] = False
        self.tidied += 1

    def _drop(self, seqs: range) -> None:
        """Free the cells of these sequences (those that hold any)."""
        for s in seqs:
            if self._records[s]:
                self._llama.llama_memory_seq_rm(self._mem, s, -1, -1)
                self._records[s] = []

    def _worth_waiting(self, w: Work) -> bool:
        """Whether another request now prefilling will soon hold much more of this prompt
        than the cache does (clients that start together share one system prompt)."""
        cached = max((common_prefix(rec, w.tokens) for rec in self._records), default=0)
        return any(o.prefilling and common_prefix(o.tokens, w.tokens) > cached + PREFILL_CHUNK
                   for o in self._active)

    def _admit(self, w: Work) -> None:
        """Put the prompt's cached prefix in the slot's first sequence."""
        llama, mem = self._llama, self._mem
        own = w.slot * self.votes_max
        tokens = w.tokens
        matches = [common_prefix(rec, tokens) for rec in self._records]
        best = max(range(len(matches)), key=lambda s: (matches[s], s == own))
        keep = min(matches[best], len(tokens) - 1)  # evaluate >= 1 token for logits
        if best != own and keep > min(matches[own], len(tokens) - 1):
            llama.llama_memory_seq_rm(mem, own, -1, -1)
            llama.llama_memory_seq_cp(mem, best, own, 0, keep)
        else:
            keep = min(matches[own], len(tokens) - 1)
        self._drop(range(own + 1, own + self.votes_max))
        if not llama.llama_memory_seq_rm(mem, own, keep, -1):
            llama.llama_memory_seq_rm(mem, own, -1, -1)
            keep = 0
        self._records[own] = tokens[:keep]
        w.fed = keep

    def _iterate(self) -> None:
        llama, batch = self._llama, self._batch
        entries: list[tuple[int, int, list[int], bool]] = []  # token, pos, seqs, logits
        decoding: list[tuple[Sample, int]] = []  # sample, batch index
        # a request's votes that read one logits row and drew the same token still
        # have equal histories: one row (one KV cell tagged with all their sequences)
        rows: dict[tuple[int, int], int] = {}
        for w in self._active:
            for smp in w.samples:
                if smp.feed is None:
                    continue
                key = (smp.drawn_from, smp.feed)
                j = rows.get(key, -1)
                if j < 0:
                    j = rows[key] = len(entries)
                    entries.append((smp.feed, len(w.tokens) + smp.n_tokens - 1, [], True))
                entries[j][2].append(smp.seq)
                decoding.append((smp, j))
        prefill: list[tuple[Work, int, int]] = []  # work, first index, count
        budget = len(entries) + PREFILL_CHUNK
        for w in self._active:
            room = min(self.n_batch, budget) - len(entries)
            if not w.prefilling or room <= 0:
                continue
            own = w.slot * self.votes_max
            chunk = w.tokens[w.fed : w.fed + room]
            prefill.append((w, len(entries), len(chunk)))
            for j, tok in enumerate(chunk):
                pos = w.fed + j
                entries.append((tok, pos, [own], pos == len(w.tokens) - 1))
        self.rows_saved += len(decoding) - len(rows)
        in_call = {smp.seq // self.votes_max for smp, _ in decoding}
        in_call.update(w.slot for w, _, _ in prefill)
        if len(in_call) > 1:  # their new cells will lie side by side
            for slot in in_call:
                self._mixed[slot] = True
        for j, (tok, pos, seqs, logits) in enumerate(entries):
            batch.token[j] = tok
            batch.pos[j] = pos
            batch.n_seq_id[j] = len(seqs)
            for m, seq in enumerate(seqs):
                batch.seq_id[j][m] = seq
            batch.logits[j] = 1 if logits else 0
        batch.n_tokens = len(entries)
        t0 = time.perf_counter()
        rc = llama.llama_decode(self._ctx, batch)
        spent = time.perf_counter() - t0
        self._stats["decode_s"] += spent
        self._stats["decode_rows"] += len(rows)
        self._stats["prefill_tokens"] += len(entries) - len(rows)
        if prefill:  # where the time goes: prompt chunks (rows ride along) or rows alone
            self._stats["prompt_calls_s"] += spent
        else:
            self._stats["row_calls_s"] += spent
            self._stats["row_calls_rows"] += len(rows)
        self.decodes += 1
        if rc != 0:
            reason = "no room left in the context" if rc == 1 else f"llama_decode returned {rc}"
            raise UserError(f"generation failed: {reason}")
        for smp, j in decoding:
            assert smp.feed is not None
            self._records[smp.seq].append(smp.feed)
            smp.feed, smp.logit = None, j
        for w, first, count in prefill:
            own = w.slot * self.votes_max
            self._records[own].extend(w.tokens[w.fed : w.fed + count])
            w.fed += count
            w.evaluated += count
            if w.fed == len(w.tokens):
                self._pin(w)
                self._start_samples(w, first + count - 1)
        for w in list(self._active):
            for smp in w.samples:
                if smp.logit >= 0 and smp.finish is None:
                    self._sample(w, smp)
            if w.samples and all(s.finish is not None for s in w.samples):
                self._complete(w)

    def _pin(self, w: Work) -> None:
        """Keep the prompt's fixed start (`w.pin`, now in the slot's first sequence) in
        a pinned sequence: a tag on the same cells, no evaluation."""
        n = len(w.pin)
        if n < 2 or not self.pins or w.tokens[:n] != w.pin:
            return
        pins = range(self._pin_first, self._pin_first + self.pins)
        now = time.monotonic()
        for q in pins:
            if self._records[q] == w.pin:
                self._pin_used[q - self._pin_first] = now
                return
        q = min(pins, key=lambda s: self._pin_used[s - self._pin_first])
        held = sum(len(self._records[s]) for s in pins if s != q)
        if held + n > self.pin_budget:
            return
        llama, own = self._llama, w.slot * self.votes_max
        llama.llama_memory_seq_rm(self._mem, q, -1, -1)
        llama.llama_memory_seq_cp(self._mem, own, q, 0, n)
        self._records[q] = list(w.pin)
        self._pin_used[q - self._pin_first] = now
        self.pinned += 1

    def _start_samples(self, w: Work, logit: int) -> None:
        llama = self._llama
        own = w.slot * self.votes_max
        w.t1 = time.perf_counter()
        for i in range(w.n):
            if i:
                llama.llama_memory_seq_cp(self._mem, own, own + i, -1, -1)
                self._records[own + i] = list(w.tokens)
            chain = native.sampler_chain(temperature=w.temperature, top_p=w.top_p,
                                         top_k=self.top_k, seed=w.seed + i)
            w.samples.append(Sample(seq=own + i, sampler=chain, logit=logit))

    def _sample(self, w: Work, smp: Sample) -> None:
        llama = self._llama
        tok = llama.llama_sampler_sample(smp.sampler, self._ctx, smp.logit)
        smp.drawn_from, smp.logit = smp.logit, -1
        smp.n_tokens += 1
        self.counter.add()
        if not w.ignore_eos and llama.llama_vocab_is_eog(self._vocab, tok):
            smp.finish = "stop"
        else:
            before = len(smp.text)
            smp.text += smp.decoder.decode(self._detok.piece(tok))
            if w.stop:
                reach = max((len(s) for s in w.stop), default=0)
                start = max(0, before - reach)
                hit = find_stop(smp.text[start:], w.stop)
                if hit is not None:
                    smp.text = smp.text[: start + hit[0]]
                    smp.finish, smp.stop = "stop", hit[1]
            if smp.finish is None and (smp.n_tokens >= w.max_tokens
                                       or len(w.tokens) + smp.n_tokens >= self.n_ctx):
                smp.finish = "length"
        if w.on_token is not None:
            safe = len(smp.text) if smp.finish else len(smp.text) - holdback(smp.text, w.stop)
            if safe > smp.emitted:
                try:
                    w.on_token(smp.seq - w.slot * self.votes_max, smp.text[smp.emitted : safe])
                except Exception:  # the RequestEngine guard: the client is gone
                    self._finish_all(w, "cancelled")
                    return
                smp.emitted = safe
        if smp.finish is None:
            smp.feed = tok

    def _finish_all(self, w: Work, reason: FinishReason) -> None:
        for smp in w.samples:
            if smp.finish is None:
                smp.finish, smp.feed = reason, None
        if not w.samples:  # cancelled during prefill
            w.samples = [Sample(seq=w.slot * self.votes_max + i, sampler=None, finish=reason)
                         for i in range(w.n)]
        self._complete(w)

    def _complete(self, w: Work) -> None:
        if w.done.is_set():
            return
        t2 = time.perf_counter()
        t1 = w.t1 or t2
        out = []
        for i, smp in enumerate(w.samples):
            if smp.sampler is not None:
                self._llama.llama_sampler_free(smp.sampler)
                smp.sampler = None
            timings = Timings(prompt_s=t1 - w.t0 if i == 0 else 0.0, generate_s=t2 - t1,
                              total_s=t2 - w.t0,
                              prompt_tokens_evaluated=w.evaluated if i == 0 else 0)
            out.append(Completion(text=smp.text, finish_reason=smp.finish or "length",
                                  prompt_tokens=len(w.tokens), completion_tokens=smp.n_tokens,
                                  timings=timings, stop=smp.stop))
        w.result = out
        if w in self._active:
            self._active.remove(w)
        w.done.set()

    def _fail(self, w: Work, err: BaseException) -> None:
        for smp in w.samples:
            if smp.sampler is not None:
                self._llama.llama_sampler_free(smp.sampler)
                smp.sampler = None
        w.error = err
        w.done.set()
