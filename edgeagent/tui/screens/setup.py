"""`FirstRunScreen`: prepares the default model and the starter wiki, with progress.

The work is a list of `SetupTask`s run one by one on a worker thread; each
reports `(fraction or None, detail)` through its callback. A failure shows
the reason and the command that fixes it; `r` retries, `c` continues without
that part, `q` quits. Not covered: choosing another default model here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static

from edgeagent.errors import UserError

ProgressCallback = Callable[[float | None, str], None]


@dataclass
class SetupTask:
    label: str  # "Default model: SmolLM2-135M-Instruct (Q4_1, 98 MB)"
    fix: str  # the command a user can run by hand when this fails
    run: Callable[[ProgressCallback], None]
    optional: bool = False  # the app can work without it


class FirstRunScreen(Screen[bool]):
    """Dismissed with True when every required task finished."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", show=False),
        Binding("c", "skip", "Continue without", show=False),
        Binding("q", "quit_app", "Quit"),
    ]

    def __init__(self, tasks: list[SetupTask]) -> None:
        super().__init__(id="first-run")
        self.tasks = tasks
        self.failed: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="setup-box"):
            yield Static(Text("Welcome to edgeagent", style="bold"), id="setup-title")
            yield Static(
                "A small agent that searches a local Wikipedia and runs Python, offline. "
                "Getting it ready once (downloads come from PyPI; nothing else is sent):",
                id="setup-intro",
            )
            for i, task in enumerate(self.tasks):
                yield Static(Text(task.label), classes="setup-label")
                yield ProgressBar(total=100, show_eta=False, id=f"bar-{i}")
                yield Static("waiting", id=f"detail-{i}", classes="setup-detail")
            yield Static("", id="setup-error")
        yield Footer()

    def on_mount(self) -> None:
        self._run_from(0)

    @work(thread=True, exclusive=True, group="setup")
    def _run_from(self, start: int) -> None:
        for i in range(start, len(self.tasks)):
            self.app.call_from_thread(self._progress, i, None, "working…")
            def report(fraction: float | None, detail: str, i: int = i) -> None:
                self.app.call_from_thread(self._progress, i, fraction, detail)

            try:
                self.tasks[i].run(report)
            except UserError as exc:
                self.app.call_from_thread(self._fail, i, str(exc))
                return
            except Exception as exc:  # a bug or OS error: still explain, never crash
                self.app.log.error(traceback.format_exc())
                self.app.call_from_thread(self._fail, i, f"{type(exc).__name__}: {exc}")
                return
            self.app.call_from_thread(self._progress, i, 1.0, "ready")
        self.app.call_from_thread(self.dismiss, True)

    def _progress(self, i: int, fraction: float | None, detail: str) -> None:
        bar = self.query_one(f"#bar-{i}", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * fraction)
        self.query_one(f"#detail-{i}", Static).update(Text(detail))

    def _fail(self, i: int, message: str) -> None:
        self.failed = i
        task = self.tasks[i]
        self.query_one(f"#detail-{i}", Static).update(Text("failed", style="bold red"))
        skip = "  c continue without it" if task.optional else ""
        self.query_one("#setup-error", Static).update(Text.assemble(
            ("Problem: ", "bold"), message, "\n",
            ("Fix: ", "bold"), task.fix, "\n",
            f"r retry{skip}  q quit",
        ))

    def action_retry(self) -> None:
        if self.failed is not None:
            start, self.failed = self.failed, None
            self.query_one("#setup-error", Static).update("")
            self._run_from(start)

    def action_skip(self) -> None:
        if self.failed is not None and self.tasks[self.failed].optional:
            start, self.failed = self.failed + 1, None
            self.query_one("#setup-error", Static).update("")
            self._run_from(start)

    def action_quit_app(self) -> None:
        self.app.exit(1)
