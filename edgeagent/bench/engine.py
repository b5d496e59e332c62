"""`edgeagent bench engine`: our llama.cpp engine against llama-cpp-python itself,
and where the time of an 8-sequence batch goes.

All figures come from one run on one GGUF, so ratios compare like with like
(on a shared CPU absolute seconds drift; compare ratios, not seconds, across runs):

- `raw_tok_s` vs `engine_tok_s`: greedy generation of the same prompt through
  llama-cpp-python's high-level `Llama.create_completion` and through
  `LlamaCppEngine.generate` (cache reset before each, so both evaluate the
  prompt); tokens per wall-clock second, best of `--repeat`.
- `single_s`, `batched8_s`, `sequential8_s`: `--tokens` tokens (EOS ignored)
  at the paper's sampling settings (temperature 0.4, top-p 0.8) as one sample,
  as 8 samples in one batched call, and as 8 calls one after the other; the
  prompt is already cached, so these time generation alone.
  `single_profile` / `batched8_profile`: the seconds of those calls spent in
  `llama_decode`, in the native samplers and in Python, per decoded step.
- `variants` (skipped with `--quick`): the same single / batched-8 pair for
  each thread count of `--threads-list` and with llama.cpp's repacked CPU
  weight layouts turned off (`repack_off`), and with every sample decoded in
  its own row (`share_off`: no row shared by samples whose histories are
  still equal), measured interleaved with the default engine so that load on
  the machine hits all alike. The profiles' `rows_per_step` against
  `samples_per_step` shows how much sharing saved.
- `logits8_vs_logits1`: one `llama_decode` of 8 tokens in 8 sequences with
  logits for all 8 rows vs for one row (what the per-row output layer and
  logits copy cost).
- `prefix_new_tokens` / `prefix_evaluated_tokens`: a chat continued by an
  assistant and a user turn; tokens of the new prompt the model has not run
  (after its common prefix with the first prompt and the token generated
  there) vs tokens the engine evaluated.

Not covered: prompt-processing throughput at long contexts, memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from edgeagent.bench.report import make_report
from edgeagent.engines.base import Message
from edgeagent.engines.kv_sequences import common_prefix

PROMPT: list[Message] = [
    {"role": "user", "content": "Write a long, detailed story about a dragon who learns to "
     "count, with many characters and places."},
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=64, help="tokens per sample (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--threads-list", default="1,2",
                        help="thread counts compared in `variants` (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="skip the variants")
    parser.add_argument("--temperature", type=float, default=0.4)
    parser.add_argument("--top-p", type=float, default=0.8)


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _per_step(profile: dict[str, float]) -> dict[str, float]:
    calls = max(1.0, profile.get("decode_calls", 0.0))
    return {
        "decode_ms_per_step": round(1000 * profile.get("decode_s", 0.0) / calls, 3),
        "sample_ms_per_step": round(1000 * profile.get("sample_s", 0.0) / calls, 3),
        "python_ms_per_step": round(1000 * profile.get("python_s", 0.0) / calls, 3),
        "steps": int(calls),
        "rows_per_step": round(profile.get("decoded_tokens", 0.0) / calls, 2),
        "samples_per_step": round(profile.get("sample_tokens", 0.0) / calls, 2),
    }


def _pair(engine: Any, prompt: str, kw: dict[str, Any]) -> tuple[float, float, dict[str, Any],
                                                                   dict[str, Any]]:
    """(single_s, batched8_s, their profiles) for one repetition."""
    single = _best(lambda: engine.generate(prompt, n=1, seed=1, **kw), 1)
    p1 = dict(engine.profile)
    batched = _best(lambda: engine.generate(prompt, n=8, seed=1, **kw), 1)
    p8 = dict(engine.profile)
    return single, batched, p1, p8


def _logits_probe(engine: Any, prompt: str, repeat: int) -> float:
    """Time of one 8-token decode with logits for 8 rows over that with logits for 1."""
    llama_cpp = engine._llama
    kv = engine._kv
    tokens = engine.tokenize(prompt)
    engine.reset()
    kv.prepare(tokens)
    kv.share(8)  # 8 sequences hold the prompt

    def decode(rows: int) -> None:
        batch = kv.batch
        for j in range(8):
            batch.token[j] = tokens[-1]
            batch.pos[j] = len(tokens)
            batch.n_seq_id[j] = 1
            batch.seq_id[j][0] = j
            batch.logits[j] = 1 if j < rows else 0
        batch.n_tokens = 8
        kv.decode()
        for j in range(8):
            llama_cpp.llama_memory_seq_rm(kv.mem, j, len(tokens), -1)

    decode(8)
    t8, t1 = [], []
    for _ in range(max(3, repeat * 3)):
        t8.append(_best(lambda: decode(8), 1))
        t1.append(_best(lambda: decode(1), 1))
    engine.reset()
    return min(t8) / min(t1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.engines.llamacpp import LlamaCppEngine
    from edgeagent.models.registry import resolve_model

    path = resolve_model(getattr(args, "model", None))
    tokens = args.tokens
    engine = LlamaCppEngine(path, n_threads=args.threads, n_ctx=2048)
    variants: dict[str, Any] = {}
    try:
        prompt_text = engine.render(PROMPT)

        # 1. engine vs raw llama-cpp-python, greedy, prompt evaluated each time
        import llama_cpp

        raw = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=engine.n_threads,
                              n_threads_batch=engine.n_threads, verbose=False)
        raw_counts: list[int] = []

        def raw_once() -> None:
            raw.reset()
            out: Any = raw.create_completion(prompt_text, max_tokens=tokens, temperature=0.0)
            raw_counts.append(int(out["usage"]["completion_tokens"]))

        eng_counts: list[int] = []

        def eng_once() -> None:
            engine.reset()
            eng_counts.append(engine.generate(prompt_text, max_tokens=tokens)[0].completion_tokens)

        raw_once()
        eng_once()  # warm up both
        raw_times, eng_times = [], []
        for _ in range(max(1, args.repeat)):  # interleave so drift hits both alike
            raw_times.append(_best(raw_once, 1))
            eng_times.append(_best(eng_once, 1))
        raw.close()
        raw_tok_s = raw_counts[-1] / min(raw_times)
        engine_tok_s = eng_counts[-1] / min(eng_times)

        # 2. batched sampling; the prompt stays cached between calls. The variants
        # (other thread counts, no repacking) are measured in turn with the default.
        kw: dict[str, Any] = dict(temperature=args.temperature, top_p=args.top_p,
                                  max_tokens=tokens, ignore_eos=True)
        others: dict[str, Any] = {}
        if not args.quick:
            for n in sorted({int(x) for x in args.threads_list.split(",") if x.strip()}):
                if n != engine.n_threads:
                    others[f"threads{n}"] = LlamaCppEngine(path, n_threads=n, n_ctx=2048)
            others["repack_off"] = LlamaCppEngine(path, n_threads=engine.n_threads,
                                                  n_ctx=2048, repack=False)
            others["share_off"] = LlamaCppEngine(path, n_threads=engine.n_threads,
                                                 n_ctx=2048, share_rows=False)
        everyone = {"default": engine, **others}
        for e in everyone.values():
            e.generate(prompt_text, n=8, seed=0, **kw)  # warm: prompt cached, pages in
        best: dict[str, list[Any]] = {}
        for _ in range(max(1, args.repeat)):
            for name, e in everyone.items():
                single, batched, p1, p8 = _pair(e, prompt_text, kw)
                got = best.setdefault(name, [single, batched, p1, p8])
                if single < got[0]:
                    got[0], got[2] = single, p1
                if batched < got[1]:
                    got[1], got[3] = batched, p8
        single_s, batched8_s, single_prof, batched_prof = best["default"]
        sequential8_s = _best(
            lambda: [engine.generate(prompt_text, n=1, seed=1 + i, **kw) for i in range(8)],
            max(1, args.repeat - 1),
        )
        for name, e in others.items():
            s1, s8, _, p8 = best[name]
            variants[name] = {"threads": e.n_threads, "repack": e.repack,
                              "single_s": round(s1, 4), "batched8_s": round(s8, 4),
                              "batched8_vs_single": round(s8 / s1, 3),
                              "batched8_vs_default_batched8": round(s8 / batched8_s, 3),
                              "share_rows": e.share_rows,
                              "batched8_profile": _per_step(p8)}
            e.close()
        logits_ratio = _logits_probe(engine, prompt_text, args.repeat)

        # 3. prefix reuse on a continued chat
        engine.reset()
        first = engine.generate(PROMPT, max_tokens=1)[0]
        cont: list[Message] = [
            *PROMPT,
            {"role": "assistant", "content": "Once upon a time there was a dragon."},
            {"role": "user", "content": "Continue, and make the dragon count to ten."},
        ]
        held = engine.tokenize(engine.render(PROMPT)) + list(first.tokens or [])
        grown = engine.tokenize(engine.render(cont))
        common = common_prefix(held, grown)  # the cache holds the prompt and what it generated
        second = engine.generate(cont, max_tokens=1)[0]
        info = engine.info()
    finally:
        engine.close()
    return make_report(
        "engine", model=info["name"],
        baseline="one sample on the same cached prompt (batched), raw llama-cpp-python (tok/s)",
        ratio={"batched8_vs_single": round(batched8_s / single_s, 3),
               "sequential8_vs_single": round(sequential8_s / single_s, 3),
               "engine_vs_raw": round(engine_tok_s / raw_tok_s, 3)},
        path=str(path), quant=info["quant"], threads=info["n_threads"], tokens=tokens,
        raw_tok_s=round(raw_tok_s, 2), engine_tok_s=round(engine_tok_s, 2),
        engine_vs_raw=round(engine_tok_s / raw_tok_s, 3),
        single_s=round(single_s, 4), batched8_s=round(batched8_s, 4),
        sequential8_s=round(sequential8_s, 4),
        batched8_vs_single=round(batched8_s / single_s, 3),
        sequential8_vs_single=round(sequential8_s / single_s, 3),
        single_profile=_per_step(single_prof), batched8_profile=_per_step(batched_prof),
        logits8_vs_logits1=round(logits_ratio, 3),
        variants=variants,
        prefix_first_prompt_tokens=first.prompt_tokens,
        prefix_new_tokens=len(grown) - common,
        prefix_evaluated_tokens=second.timings.prompt_tokens_evaluated,
        raw_vs_engine_greedy_tokens=[raw_counts[-1], eng_counts[-1]],
        median_raw_s=round(statistics.median(raw_times), 4),
        median_engine_s=round(statistics.median(eng_times), 4),
    )
