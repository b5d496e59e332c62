"""A rich progress bar for index builds: passages, passages/s, and source bytes read.

`rich_progress()` is a context manager yielding a `ProgressFn` for
`build_from_file` / `build_index` / `ensure_starter_index` / `wiki pull`. It
draws on stderr and only when stderr is a terminal (scripts get no control
codes); with `plain_every=S` a non-terminal stderr gets one plain line every
S seconds instead (long pulls in logs and CI).

Not covered: progress for downloads (pip prints its own).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from edgeagent.wiki.build import BuildStatus, ProgressFn


@contextmanager
def rich_progress(label: str = "indexing", plain_every: float | None = None
                  ) -> Iterator[ProgressFn]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield _plain(label, plain_every) if plain_every else (lambda status: None)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[passages]:,} passages"),
        TextColumn("{task.fields[rate]:,.0f} passages/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None, passages=0, rate=0.0)

        def update(status: BuildStatus) -> None:
            bar.update(
                task,
                description=f"{label} ({status.phase})" if status.phase != "indexing" else label,
                total=status.bytes_total,
                completed=status.bytes_total if status.phase == "done" and status.bytes_total
                else status.bytes_read,
                passages=status.passages,
                rate=status.passages_per_s,
            )

        yield update


def _plain(label: str, every: float) -> ProgressFn:
    last = [time.monotonic()]

    def update(status: BuildStatus) -> None:
        now = time.monotonic()
        if now - last[0] < every and status.phase in ("indexing", "skipping"):
            return
        last[0] = now
        total = f" of {status.bytes_total / 1e6:,.0f}" if status.bytes_total else ""
        print(f"{label}: {status.phase}, {status.passages:,} passages, "
              f"{status.bytes_read / 1e6:,.0f}{total} MB read, "
              f"{status.passages_per_s:,.0f} passages/s", file=sys.stderr, flush=True)

    return update
