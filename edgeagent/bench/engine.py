"""`edgeagent bench engine`: our llama.cpp engine against llama-cpp-python itself.

All figures come from one run on one GGUF, so ratios compare like with like:

- `raw_tok_s` vs `engine_tok_s`: greedy generation of the same prompt through
  llama-cpp-python's high-level `Llama.create_completion` and through
  `LlamaCppEngine.generate` (cache reset before each, so both evaluate the
  prompt); tokens per wall-clock second, best of `--repeat`.
- `single_s`, `batched8_s`, `sequential8_s`: 64 tokens (EOS ignored) at the
  paper's sampling settings (temperature 0.4, top-p 0.8) as one sample, as 8
  samples in one batched call, and as 8 calls one after the other; the prompt
  is already cached, so these time generation alone.
- `prefix_new_tokens` / `prefix_evaluated_tokens`: a chat continued by an
  assistant and a user turn; tokens the prompt grew by vs tokens the engine
  evaluated.

Not covered: prompt-processing throughput at long contexts, memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from edgeagent.engines.base import Message

PROMPT: list[Message] = [
    {"role": "user", "content": "Write a long, detailed story about a dragon who learns to "
     "count, with many characters and places."},
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=64, help="tokens per sample (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--temperature", type=float, default=0.4)
    parser.add_argument("--top-p", type=float, default=0.8)


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeagent.engines.llamacpp import LlamaCppEngine
    from edgeagent.models.registry import resolve_model

    path = resolve_model(getattr(args, "model", None))
    tokens = args.tokens
    engine = LlamaCppEngine(path, n_threads=args.threads, n_ctx=2048)
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

        # 2. batched sampling; the prompt stays cached between calls
        kw: dict[str, Any] = dict(temperature=args.temperature, top_p=args.top_p,
                                  max_tokens=tokens, ignore_eos=True)
        engine.generate(prompt_text, n=8, seed=0, **kw)
        single_s = _best(lambda: engine.generate(prompt_text, n=1, seed=1, **kw), args.repeat)
        batched8_s = _best(lambda: engine.generate(prompt_text, n=8, seed=1, **kw), args.repeat)
        sequential8_s = _best(
            lambda: [engine.generate(prompt_text, n=1, seed=1 + i, **kw) for i in range(8)],
            max(1, args.repeat - 1),
        )

        # 3. prefix reuse on a continued chat
        engine.reset()
        first = engine.generate(PROMPT, max_tokens=1)[0]
        cont: list[Message] = [
            *PROMPT,
            {"role": "assistant", "content": "Once upon a time there was a dragon."},
            {"role": "user", "content": "Continue, and make the dragon count to ten."},
        ]
        p1 = engine.tokenize(engine.render(PROMPT))
        p2 = engine.tokenize(engine.render(cont))
        common = 0
        while common < min(len(p1), len(p2)) and p1[common] == p2[common]:
            common += 1
        second = engine.generate(cont, max_tokens=1)[0]
        info = engine.info()
    finally:
        engine.close()
    return {
        "model": info["name"],
        "path": str(path),
        "quant": info["quant"],
        "threads": info["n_threads"],
        "tokens": tokens,
        "raw_tok_s": round(raw_tok_s, 2),
        "engine_tok_s": round(engine_tok_s, 2),
        "engine_vs_raw": round(engine_tok_s / raw_tok_s, 3),
        "single_s": round(single_s, 4),
        "batched8_s": round(batched8_s, 4),
        "sequential8_s": round(sequential8_s, 4),
        "batched8_vs_single": round(batched8_s / single_s, 3),
        "sequential8_vs_single": round(sequential8_s / single_s, 3),
        "prefix_first_prompt_tokens": first.prompt_tokens,
        "prefix_new_tokens": len(p2) - common,
        "prefix_evaluated_tokens": second.timings.prompt_tokens_evaluated,
        "raw_vs_engine_greedy_tokens": [raw_counts[-1], eng_counts[-1]],
        "median_raw_s": round(statistics.median(raw_times), 4),
        "median_engine_s": round(statistics.median(eng_times), 4),
    }
