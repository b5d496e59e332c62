"""KV states of fixed prompt prefixes, shared by every engine of one process.

`LlamaCppEngine.keep_prefix` evaluates a prefix (the agent's system prompt)
once and pins it in a KV sequence of its own. The sequence's state (as
`llama_state_seq_get_data` serialises it) is also kept here, keyed by the
model file, its LoRA adapter and the prefix tokens, so another engine of the
same model (an `eval` worker thread) loads it instead of evaluating it again.
A few states are kept (least recently used dropped first); each is the K and
V rows of the prefix (about 23 KB per token for SmolLM2-135M).

Not covered: keeping states on disk across processes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

_lock = threading.Lock()
_states: OrderedDict[Hashable, bytes] = OrderedDict()
MAX_STATES = 8


def get(key: Hashable) -> bytes | None:
    with _lock:
        data = _states.get(key)
        if data is not None:
            _states.move_to_end(key)
        return data


def put(key: Hashable, data: bytes) -> None:
    with _lock:
        _states[key] = data
        _states.move_to_end(key)
        while len(_states) > MAX_STATES:
            _states.popitem(last=False)


def clear() -> None:
    with _lock:
        _states.clear()
