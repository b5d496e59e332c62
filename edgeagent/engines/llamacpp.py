"""`LlamaCppEngine`: a local GGUF model on the CPU through llama.cpp.

What it does beyond a plain completion call:

- **KV prefix reuse.** The engine remembers which tokens each KV sequence
  holds. A new prompt is compared with them; only the tokens after the longest
  common prefix are evaluated. Agent steps only append (prompt + chosen
  action + observation), so each step evaluates just its new tokens. When the
  best match is a sampled candidate's sequence (the one the vote chose), that
  sequence is copied to sequence 0 instead of re-evaluating it.
- **Batched sampling.** `n > 1` evaluates the prompt once in sequence 0,
  shares it with sequences 1..n-1 (`llama_memory_seq_cp`; the KV cache is
  unified, so this copies cell tags, not tensors), then decodes one token per
  live sequence per `llama_decode` call, each with its own native sampler
  chain and seed (`seed + i`).
- An optional LoRA adapter GGUF (`lora=`, `lora_scale=`; see
  `edgeagent convert lora`), applied at load time on top of the base weights.
- Stop strings (not included in the text), end-of-generation tokens,
  streaming with hold-back so a half-seen stop string is never emitted,
  cancellation from another thread, one-line errors for bad files and
  over-long prompts.

Not covered: GPU offload, grammars, logprobs, speculative decoding.
"""

from __future__ import annotations

import codecs
import math
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.engines import llama_native as native
from edgeagent.engines.base import (
    Completion,
    FinishReason,
    Message,
    Timings,
    TokenCallback,
    find_stop,
    holdback,
)
from edgeagent.engines.chat_template import render_chat
from edgeagent.errors import UserError


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class _Sample:
    """Decoding state of one sequence."""

    seq: int
    sampler: Any
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    text: str = ""
    emitted: int = 0
    n_tokens: int = 0
    logit_index: int = -1
    finish: FinishReason | None = None
    stop: str | None = None


class LlamaCppEngine:
    """A GGUF model loaded once; `generate` as in `edgeagent.engines.base`."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_parallel: int = 8,
        top_k: int = 40,
        verbose: bool = False,
        lora: str | os.PathLike[str] | None = None,
        lora_scale: float = 1.0,
    ) -> None:
        self.path = Path(model_path)
        self.lora = Path(lora) if lora is not None else None
        self.lora_scale = float(lora_scale)
        if not math.isfinite(self.lora_scale):
            raise UserError(f"the LoRA scale must be a finite number, not {lora_scale}")
        self._llama = native.init_backend(verbose)
        llama_cpp = self._llama
        self._model = native.load_model(self.path)
        self._ctx: Any = None
        self._batch: Any = None
        self._adapter: Any = None
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            n_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
            self.n_ctx = min(n_ctx, n_train) if n_train > 0 else n_ctx
            self.n_batch = max(1, min(n_batch, self.n_ctx))
            self.max_parallel = max(1, max_parallel)
            self.top_k = top_k
            threads = n_threads or default_threads()
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = self.n_ctx
            params.n_batch = self.n_batch
            params.n_ubatch = self.n_batch
            params.n_seq_max = self.max_parallel
            params.n_threads = threads
            params.n_threads_batch = threads
            params.kv_unified = True
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise UserError(f"cannot create a context for {self.path.name}: "
                                f"{native._last_error()}")
            if self.lora is not None:
                self._adapter = native.load_lora(self._model, self.lora)
                native.set_lora(self._ctx, self._adapter, self.lora_scale)
            self._mem = llama_cpp.llama_get_memory(self._ctx)
            self._batch = llama_cpp.llama_batch_init(max(self.n_batch, self.max_parallel), 0, 1)
        except BaseException:
            self.close()
            raise
        self.n_threads = threads
        self._detok = native.Detokenizer(self._vocab)
        self._seq_tokens: list[list[int]] = [[] for _ in range(self.max_parallel)]
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.template = native.chat_template(self._model)
        self.bos_text = native.token_text(self._vocab, llama_cpp.llama_vocab_bos(self._vocab))
        self.eos_text = native.token_text(self._vocab, llama_cpp.llama_vocab_eos(self._vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.architecture = native.meta(self._model, "general.architecture") or "unknown"
        self.name = native.meta(self._model, "general.name") or self.path.stem
        self.quant = _quant_name(native.meta(self._model, "general.file_type"), self.path)
        self.n_params = int(llama_cpp.llama_model_n_params(self._model))

    # -- text <-> tokens -------------------------------------------------

    def render(self, messages: Sequence[Message] | str, prefix: str | None = None) -> str:
        """The prompt text: a chat rendered with the model's template, or `messages` as is."""
        if isinstance(messages, str):
            return messages + (prefix or "")
        return render_chat(
            self.template, messages, bos_token=self.bos_text, eos_token=self.eos_text,
            prefix=prefix,
        )

    def tokenize(self, text: str) -> list[int]:
        add = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return native.tokenize(self._vocab, text, add_special=add)

    def detokenize(self, tokens: list[int]) -> str:
        return self._detok.text(tokens)

    # -- control -----------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running `generate` after its current token (thread-safe)."""
        self._cancel.set()

    def reset(self) -> None:
        """Forget the KV cache (the next prompt is evaluated from scratch)."""
        with self._lock:
            self._llama.llama_memory_clear(self._mem, True)
            self._seq_tokens = [[] for _ in range(self.max_parallel)]

    def close(self) -> None:
        llama_cpp = self._llama
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._adapter:  # before the model it belongs to
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "name": self.name, "architecture": self.architecture,
            "quant": self.quant, "n_params": self.n_params, "n_ctx": self.n_ctx,
            "n_threads": self.n_threads, "size_bytes": self.path.stat().st_size,
            "lora": str(self.lora) if self.lora is not None else None,
            "lora_scale": self.lora_scale if self.lora is not None else None,
        }

    # -- generation ----------------------------------------------------------

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
        ignore_eos: bool = False,
    ) -> list[Completion]:
        """See `edgeagent.engines.base`; `ignore_eos` decodes past end-of-generation
        tokens (benchmarks use it to get exactly `max_tokens` tokens)."""
        if n < 1:
            raise UserError("n must be at least 1")
        if max_tokens < 1:
            raise UserError("max_tokens must be at least 1")
        if self._ctx is None:
            raise UserError("the engine is closed")
        tokens = self.tokenize(self.render(messages, prefix))
        if not tokens:
            raise UserError("the prompt is empty")
        if len(tokens) >= self.n_ctx:
            raise UserError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.n_ctx}; "
                "shorten it or raise n_ctx"
            )
        base_seed = random.randrange(1 << 31) if seed is None else seed
        out: list[Completion] = []
        with self._lock:
            self._cancel.clear()
            for start in range(0, n, self.max_parallel):
                count = min(self.max_parallel, n - start)
                out.extend(
                    self._generate_group(
                        tokens, count, start, temperature=temperature, top_p=top_p,
                        max_tokens=max_tokens, stop=list(stop), seed=base_seed,
                        on_token=on_token, ignore_eos=ignore_eos,
                    )
                )
        return out

    def _prepare(self, tokens: list[int]) -> tuple[int, int]:
        """Put `tokens` in sequence 0, evaluating only what the cache lacks.

        Returns (tokens evaluated, batch index of the last token's logits).
        """
        llama_cpp = self._llama
        mem = self._mem
        matches = [_common_prefix(seq, tokens) for seq in self._seq_tokens]
        best = max(range(len(matches)), key=lambda s: (matches[s], s == 0))
        keep = min(matches[best], len(tokens) - 1)  # always evaluate >= 1 token for logits
        if best != 0 and keep > min(matches[0], len(tokens) - 1):
            llama_cpp.llama_memory_seq_rm(mem, 0, -1, -1)
            llama_cpp.llama_memory_seq_cp(mem, best, 0, 0, keep)
        else:
            keep = min(matches[0], len(tokens) - 1)
        for s in range(1, self.max_parallel):
            if self._seq_tokens[s]:
                llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                self._seq_tokens[s] = []
        if not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):
            llama_cpp.llama_memory_clear(mem, True)
            keep = 0
        self._seq_tokens[0] = tokens[:keep]
        batch = self._batch
        last_index = 0
        for begin in range(keep, len(tokens), self.n_batch):
            chunk = tokens[begin : begin + self.n_batch]
            for j, tok in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = begin + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                batch.logits[j] = 0
            batch.logits[len(chunk) - 1] = 1
            batch.n_tokens = len(chunk)
            last_index = len(chunk) - 1
            self._decode()
            self._seq_tokens[0].extend(chunk)
        return len(tokens) - keep, last_index

    def _decode(self) -> None:
        rc = self._llama.llama_decode(self._ctx, self._batch)
        if rc != 0:
            # the cache may be partly written: forget it all to stay consistent
            self._llama.llama_memory_clear(self._mem, True)
            self._seq_tokens = [[] for _ in range(self.max_parallel)]
            reason = "no room left in the context" if rc == 1 else f"llama_decode returned {rc}"
            raise UserError(f"generation failed: {reason}")

    def _generate_group(
        self,
        tokens: list[int],
        count: int,
        first_index: int,
        *,
        temperature: float,
        top_p: float,
        max_tokens: int,
        stop: list[str],
        seed: int,
        on_token: TokenCallback | None,
        ignore_eos: bool = False,
    ) -> list[Completion]:
        llama_cpp = self._llama
        t0 = time.perf_counter()
        evaluated, logit_index = self._prepare(tokens)
        t1 = time.perf_counter()
        for s in range(1, count):
            llama_cpp.llama_memory_seq_cp(self._mem, 0, s, -1, -1)
            self._seq_tokens[s] = list(tokens)
        samples = [
            _Sample(
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
        try:
            while live:
                if self._cancel.is_set():
                    for smp in live:
                        smp.finish = "cancelled"
                    break
                to_decode: list[tuple[_Sample, int]] = []
                for smp in live:
                    tok = llama_cpp.llama_sampler_sample(smp.sampler, self._ctx, smp.logit_index)
                    smp.n_tokens += 1
                    if not ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                        smp.finish = "stop"
                        continue
                    before = len(smp.text)
                    smp.text += smp.decoder.decode(self._detok.piece(tok))
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
                        self._stream(smp, first_index, stop, on_token)
                    if smp.finish is None:
                        to_decode.append((smp, tok))
                if not to_decode:
                    break
                batch = self._batch
                for j, (smp, tok) in enumerate(to_decode):
                    batch.token[j] = tok
                    batch.pos[j] = len(tokens) + smp.n_tokens - 1
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = smp.seq
                    batch.logits[j] = 1
                    smp.logit_index = j
                batch.n_tokens = len(to_decode)
                self._decode()
                for smp, tok in to_decode:
                    self._seq_tokens[smp.seq].append(tok)
                live = [smp for smp, _ in to_decode]
        finally:
            for smp in samples:
                llama_cpp.llama_sampler_free(smp.sampler)
        t2 = time.perf_counter()
        results: list[Completion] = []
        for i, smp in enumerate(samples):
            if on_token is not None and smp.emitted < len(smp.text):
                on_token(first_index + i, smp.text[smp.emitted :])
            timings = Timings(
                prompt_s=t1 - t0 if i == 0 else 0.0,
                generate_s=t2 - t1,
                total_s=t2 - t0,
                prompt_tokens_evaluated=evaluated if i == 0 else 0,
            )
            results.append(
                Completion(
                    text=smp.text, finish_reason=smp.finish or "length",
                    prompt_tokens=len(tokens), completion_tokens=smp.n_tokens,
                    timings=timings, stop=smp.stop,
                )
            )
        return results

    @staticmethod
    def _stream(smp: _Sample, first_index: int, stop: list[str], on_token: TokenCallback) -> None:
        safe = len(smp.text) if smp.finish is not None else len(smp.text) - holdback(smp.text, stop)
        if safe > smp.emitted:
            on_token(first_index + smp.seq, smp.text[smp.emitted : safe])
            smp.emitted = safe


def _quant_name(file_type: str | None, path: Path) -> str:
    if file_type is not None and file_type.strip().isdigit():
        try:
            import gguf

            name = gguf.LlamaFileType(int(file_type)).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except (ImportError, ValueError):
            pass
    stem = path.stem.upper()
    for q in ("Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "Q4_1",
              "Q5_0", "Q5_1", "F16", "BF16", "F32"):
        if q in stem:
            return q
    return "unknown"
