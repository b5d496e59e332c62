"""Which tokens each KV sequence of a llama.cpp context holds, and reuse of them.

`KVSequences` keeps, for every sequence of a context with a unified KV cache,
the tokens whose keys and values it holds:

- sequences `0 .. n_samples-1`: the prompt in 0, and one sampled continuation
  each while `generate` runs (`share`, `append`);
- then `n_pins` **pinned** sequences: fixed prompt prefixes (the agent's system
  prompt) kept across questions (`pin`). Their serialised states are shared
  through `prefix_store`, so another context of the same model loads a pin
  instead of evaluating it.

`prepare(tokens)` puts a prompt in sequence 0 evaluating only what no
sequence holds yet: it finds the longest common prefix over all sequences,
copies it into 0 when another sequence (a chosen candidate, a pin) has more of
it (`llama_memory_seq_cp` on a unified cache tags cells; no tensors move), and
evaluates the rest in `n_batch` chunks. A failed decode forgets everything so
the bookkeeping never disagrees with the cache.

Not covered: sampling (the engine), rendering and tokenizing prompts.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Hashable, Sequence
from typing import Any

from edgeagent.engines import prefix_store
from edgeagent.errors import UserError


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class KVSequences:
    """The token bookkeeping of one context; not thread-safe (the engine locks)."""

    def __init__(self, llama_cpp: Any, ctx: Any, batch: Any, *, n_batch: int,
                 n_samples: int, n_pins: int) -> None:
        self._llama = llama_cpp
        self.ctx = ctx
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.batch = batch
        self.n_batch = n_batch
        self.n_samples = n_samples
        self.n_pins = n_pins
        self.tokens: list[list[int]] = [[] for _ in range(n_samples + n_pins)]
        self._pin_used = [0.0] * n_pins

    def clear(self) -> None:
        """Forget every sequence, pins included."""
        self._llama.llama_memory_clear(self.mem, True)
        self.tokens = [[] for _ in range(self.n_samples + self.n_pins)]

    def decode(self) -> None:
        """`llama_decode` of the batch; on failure the cache is cleared and UserError raised."""
        rc = self._llama.llama_decode(self.ctx, self.batch)
        if rc != 0:
            # the cache may be partly written: forget it all to stay consistent
            self.clear()
            reason = "no room left in the context" if rc == 1 else f"llama_decode returned {rc}"
            raise UserError(f"generation failed: {reason}")

    def prepare(self, tokens: list[int]) -> tuple[int, int]:
        """Put `tokens` in sequence 0, evaluating only what the cache lacks; the
        sample sequences 1.. are emptied. Returns (tokens evaluated, batch index
        of the last token's logits)."""
        llama_cpp = self._llama
        mem = self.mem
        matches = [common_prefix(seq, tokens) for seq in self.tokens]
        best = max(range(len(matches)), key=lambda s: (matches[s], s == 0))
        keep = min(matches[best], len(tokens) - 1)  # always evaluate >= 1 token for logits
        if best != 0 and keep > min(matches[0], len(tokens) - 1):
            llama_cpp.llama_memory_seq_rm(mem, 0, -1, -1)
            llama_cpp.llama_memory_seq_cp(mem, best, 0, 0, keep)
        else:
            keep = min(matches[0], len(tokens) - 1)
        for s in range(1, self.n_samples):
            if self.tokens[s]:
                llama_cpp.llama_memory_seq_rm(mem, s, -1, -1)
                self.tokens[s] = []
        if not llama_cpp.llama_memory_seq_rm(mem, 0, keep, -1):
            self.clear()
            keep = 0
        self.tokens[0] = tokens[:keep]
        batch = self.batch
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
            self.decode()
            self.tokens[0].extend(chunk)
        return len(tokens) - keep, last_index

    def share(self, count: int) -> None:
        """Sequences 1..count-1 get sequence 0's tokens (the prompt of a batch)."""
        for s in range(1, count):
            self._llama.llama_memory_seq_cp(self.mem, 0, s, -1, -1)
            self.tokens[s] = list(self.tokens[0])

    def pin(self, tokens: list[int], key: Hashable) -> int:
        """Keep `tokens` in a pinned sequence (the least recently used one is
        replaced); `key` names its state in `prefix_store`. Returns the tokens
        evaluated: 0 when already pinned or loaded from the store."""
        pins = range(self.n_samples, self.n_samples + self.n_pins)
        for seq in pins:
            if self.tokens[seq] == tokens:
                self._pin_used[seq - self.n_samples] = time.monotonic()
                return 0
        llama_cpp = self._llama
        seq = min(pins, key=lambda q: self._pin_used[q - self.n_samples])
        llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
        self.tokens[seq] = []
        evaluated = 0
        state = prefix_store.get(key)
        if state is None or not self._load(state, seq):
            evaluated, _ = self.prepare(tokens)
            llama_cpp.llama_memory_seq_cp(self.mem, 0, seq, 0, len(tokens))
            size = int(llama_cpp.llama_state_seq_get_size(self.ctx, seq))
            buf = (ctypes.c_uint8 * size)()
            got = int(llama_cpp.llama_state_seq_get_data(self.ctx, buf, size, seq))
            if got > 0:
                prefix_store.put(key, bytes(buf[:got]))
        self.tokens[seq] = list(tokens)
        self._pin_used[seq - self.n_samples] = time.monotonic()
        return evaluated

    def _load(self, state: bytes, seq: int) -> bool:
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        ok = int(self._llama.llama_state_seq_set_data(self.ctx, buf, len(state), seq)) > 0
        if not ok:
            self._llama.llama_memory_seq_rm(self.mem, seq, -1, -1)
        return ok
