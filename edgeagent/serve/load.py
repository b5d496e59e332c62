"""Loading the model for `edgeagent serve` as the host its `--engines` kind asks for.

`open_host` returns an `EngineHost` (`hosts`): one `LlamaCppEngine` taking
turns (`shared`), one per slot with its share of the threads (`per-slot`), or
the `BatchedHost` (`batched`). A bad file is a one-line `UserError`.
Not covered: what the hosts do (`hosts`, `batched`).
"""

from __future__ import annotations

from pathlib import Path

from edgeagent.engines.base import Engine
from edgeagent.serve.hosts import EngineHost, HostKind, PoolHost


def open_host(path: Path, *, name: str, kind: HostKind, parallel: int, n_ctx: int,
              threads: int | None, max_votes: int, lora: str | None = None,
              lora_scale: float = 1.0) -> EngineHost:
    """Load the model for `kind`; UserError (one line) for a bad file."""
    from edgeagent.engines.llamacpp import LlamaCppEngine, default_threads

    total = threads or default_threads()
    if kind == "batched":
        from edgeagent.serve.batched import BatchedHost

        return BatchedHost(path, name=name, slots=parallel, n_ctx=n_ctx, threads=total,
                           max_votes=max_votes, lora=lora, lora_scale=lora_scale)
    count = parallel if kind == "per-slot" else 1
    per = max(1, total // count)
    engines: list[Engine] = []
    try:
        for _ in range(count):
            engines.append(LlamaCppEngine(path, n_ctx=n_ctx, n_threads=per,
                                          max_parallel=max(8, max_votes), lora=lora,
                                          lora_scale=lora_scale))
    except BaseException:
        for e in engines:
            e.close()
        raise
    return PoolHost(engines, name, kind)
