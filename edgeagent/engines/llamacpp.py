"""`LlamaCppEngine`: a local GGUF model on the CPU through llama.cpp.

What it does beyond a plain completion call:

- **KV prefix reuse** (`kv_sequences`). The engine remembers which tokens each
  KV sequence holds. A new prompt is compared with them; only the tokens after
  the longest common prefix are evaluated. Agent steps only append (prompt +
  chosen action + observation), so each step evaluates just its new tokens.
  When the best match is a sampled candidate's sequence (the one the vote
  chose), that sequence is copied to sequence 0 instead of re-evaluating it.
- **Kept prefixes** (`keep_prefix`): a fixed prompt start (the agent's system
  prompt) stays in a pinned sequence across questions, and is shared with
  other engines of the same model in the process (`prefix_store`).
- **Batched sampling** (`batch_sampling`). `n > 1` evaluates the prompt once in
  sequence 0, shares it with sequences 1..n-1 (`llama_memory_seq_cp`; the KV
  cache is unified, so this copies cell tags, not tensors), then decodes one
  token per live sequence per `llama_decode` call, each with its own native
  sampler chain and seed (`seed + i`); a `StragglerPolicy` may end the batch
  before its slowest samples. `profile` says where the last call's time went.
- Construction knobs for measuring: `n_threads`, `n_batch` / `n_ubatch`,
  `repack` (llama.cpp's repacked CPU weight layouts, on by default),
  `pin_slots` (kept prefixes, 2).
- An optional LoRA adapter GGUF (`lora=`, `lora_scale=`; see
  `edgeagent convert lora`), applied at load time on top of the base weights.
- Stop strings (not included in the text), end-of-generation tokens,
  streaming with hold-back so a half-seen stop string is never emitted,
  cancellation from another thread, one-line errors for bad files and
  over-long prompts.

Not covered: GPU offload, grammars, logprobs, speculative decoding.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeagent.engines import llama_native as native
from edgeagent.engines.base import Completion, Message, StragglerPolicy, Timings, TokenCallback
from edgeagent.engines.batch_sampling import BatchSampler
from edgeagent.engines.chat_template import render_chat, text_before
from edgeagent.engines.kv_sequences import KVSequences
from edgeagent.errors import UserError


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LlamaCppEngine:
    """A GGUF model loaded once; `generate` as in `edgeagent.engines.base`."""

    supports_straggler = True

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
        pin_slots: int = 2,
        n_ubatch: int | None = None,
        repack: bool = True,
        share_rows: bool = True,
    ) -> None:
        self.path = Path(model_path)
        self.lora = Path(lora) if lora is not None else None
        self.lora_scale = float(lora_scale)
        if not math.isfinite(self.lora_scale):
            raise UserError(f"the LoRA scale must be a finite number, not {lora_scale}")
        self._llama = native.init_backend(verbose)
        llama_cpp = self._llama
        self.repack = repack
        self._model = native.load_model(self.path, repack=repack)
        self._ctx: Any = None
        self._batch: Any = None
        self._adapter: Any = None
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            n_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
            self.n_ctx = min(n_ctx, n_train) if n_train > 0 else n_ctx
            self.n_batch = max(1, min(n_batch, self.n_ctx))
            self.max_parallel = max(1, max_parallel)
            self.pin_slots = max(0, pin_slots)
            self._n_seq = self.max_parallel + self.pin_slots
            self.top_k = top_k
            threads = n_threads or default_threads()
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = self.n_ctx
            params.n_batch = self.n_batch
            params.n_ubatch = max(1, min(n_ubatch or self.n_batch, self.n_batch))
            params.n_seq_max = self._n_seq
            params.n_threads = threads
            params.n_threads_batch = threads
            params.kv_unified = True
            params.no_perf = True
            native.clear_log()
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise UserError(f"cannot create a context for {self.path.name}: "
                                f"{native.last_error()}")
            if self.lora is not None:
                self._adapter = native.load_lora(self._model, self.lora)
                native.set_lora(self._ctx, self._adapter, self.lora_scale)
            self._batch = llama_cpp.llama_batch_init(max(self.n_batch, self.max_parallel), 0,
                                                      self.max_parallel)
            self._kv = KVSequences(llama_cpp, self._ctx, self._batch, n_batch=self.n_batch,
                                   n_samples=self.max_parallel, n_pins=self.pin_slots)
            self.n_threads = threads
            self._detok = native.Detokenizer(self._vocab)
            self._sampler = BatchSampler(llama_cpp, self._kv, self._vocab, self._detok,
                                         n_ctx=self.n_ctx, top_k=top_k, share=share_rows)
        except BaseException:
            self.close()
            raise
        # where the last `generate` group spent its time: prompt_s, sample_s (the
        # samplers), decode_s (llama_decode), python_s (batch filling, text, stops)
        self.profile: dict[str, float] = {}
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

    @property
    def share_rows(self) -> bool:
        """Samples whose histories are still equal decode one batch row (default on)."""
        return bool(self._sampler.share)

    @share_rows.setter
    def share_rows(self, on: bool) -> None:
        self._sampler.share = on

    def tokenize(self, text: str) -> list[int]:
        add = self._add_bos and not (self.bos_text and text.startswith(self.bos_text))
        return native.tokenize(self._vocab, text, add_special=add)

    def detokenize(self, tokens: list[int]) -> str:
        return self._detok.text(tokens)

    # -- fixed prefixes --------------------------------------------------------

    def keep_prefix(self, prompt: Sequence[Message] | str, *, before: str | None = None) -> int:
        """Keep the KV state of a prompt prefix that many later prompts start with.

        `prompt` is rendered as for `generate`; with `before`, it is cut where
        that text first occurs (e.g. the question, to keep the system prompt and
        the task header). The prefix is evaluated once — or loaded from another
        engine of this model in this process (`prefix_store`) — into a KV
        sequence of its own that `generate` copies from, so a prompt starting
        with it evaluates only its own tokens, whatever ran in between. Up to
        `pin_slots` prefixes are kept (least recently used replaced). Returns the
        tokens evaluated (0 when it was kept already or loaded)."""
        if self.pin_slots == 0:
            return 0
        text = text_before(prompt if isinstance(prompt, str) else self.render(prompt), before)
        tokens = self.tokenize(text)[:-1]  # the last token may merge with the text after it
        if len(tokens) < 2:
            return 0
        if len(tokens) >= self.n_ctx // 2:
            raise UserError(f"the fixed prompt prefix is {len(tokens)} tokens; the context "
                            f"holds {self.n_ctx}: raise n_ctx")
        key = (str(self.path.resolve()), str(self.lora), self.lora_scale, tuple(tokens))
        with self._lock:
            return self._kv.pin(tokens, key)

    # -- control -----------------------------------------------------------

    def cancel(self) -> None:
        """Stop the running `generate` after its current token (thread-safe)."""
        self._cancel.set()

    def reset(self) -> None:
        """Forget the KV cache (the next prompt is evaluated from scratch)."""
        with self._lock:
            self._kv.clear()

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
        straggler: StragglerPolicy | None = None,
    ) -> list[Completion]:
        """See `edgeagent.engines.base`; `ignore_eos` decodes past end-of-generation
        tokens (benchmarks use it to get exactly `max_tokens` tokens); `straggler`
        cuts the slowest samples of a batch (`StragglerPolicy`)."""
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
                        straggler=straggler if count > 1 else None,
                    )
                )
        return out

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
        straggler: StragglerPolicy | None = None,
    ) -> list[Completion]:
        t0 = time.perf_counter()
        kv = self._kv
        evaluated, logit_index = kv.prepare(tokens)
        t1 = time.perf_counter()
        kv.share(count)
        samples, self.profile = self._sampler.run(
            tokens, count, first_index, logit_index, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens, stop=stop, seed=seed, on_token=on_token,
            ignore_eos=ignore_eos, straggler=straggler, cancel=self._cancel,
        )
        self.profile["prompt_s"] = t1 - t0
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
                    timings=timings, stop=smp.stop, tokens=smp.tokens,
                )
            )
        return results


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
