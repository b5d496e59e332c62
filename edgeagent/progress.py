"""Progress bars for long work: one look, on stderr, and only on a terminal.

    bar = progress_bar("score {task.fields[score]}", console=console)
    with bar:
        task = bar.add_task("gsm8k", total=100, score="-")
        bar.update(task, advance=1, score="0.4")

    with progress_callback("convert", unit="bytes") as update:
        convert(..., progress=update)          # update(done, total, name)

`progress_bar` is a rich `Progress` with the columns description, bar, count
(`12/100`, or bytes for `unit="bytes"`), the caller's extra text columns
(templates over `task.fields`), elapsed and (`eta=True`) remaining time. It is
disabled, drawing nothing, when its console (stderr by default) is not a
terminal, so scripts and logs get no control codes. `progress_callback` wraps
one task of it as the `(done, total, name)` callback that converters and
downloads call. Not covered: the TUI's own progress (widgets), pip's output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

Unit = Literal["items", "bytes"]
Callback = Callable[[int, int, str], None]  # (done, total, what is being worked on)


def progress_bar(*fields: str, unit: Unit = "items", console: Console | None = None,
                 show: bool | None = None, eta: bool = False,
                 transient: bool = False) -> Progress:
    """A rich Progress; `show` None means: only when the console is a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"), BarColumn(),
        DownloadColumn() if unit == "bytes" else MofNCompleteColumn(),
        *(TextColumn(f) for f in fields), TimeElapsedColumn(),
    ]
    if eta:
        columns.append(TimeRemainingColumn())
    visible = console.is_terminal if show is None else show
    return Progress(*columns, console=console, disable=not visible, transient=transient)


@contextmanager
def progress_callback(description: str, *, unit: Unit = "items",
                      transient: bool = True) -> Iterator[Callback]:
    """One bar driven by `update(done, total, name)` calls; nothing off a terminal."""
    bar = progress_bar("{task.fields[what]}", unit=unit, transient=transient)
    with bar:
        task = bar.add_task(description, total=None, what="")

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total or None, what=name)

        yield update
