"""Snapshots of the main screens (pytest-textual-snapshot; update with --snapshot-update).

Fixed sizes, a scripted runner with fixed timings (so tok/s is constant), and
no clock text on screen keep them deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from test_tui_fakes import FakeBackend, make_app, write_config
from textual.pilot import Pilot
from textual.widgets import Input

from edgeagent.tui.backend import Problem
from edgeagent.tui.screens.setup import FirstRunScreen, SetupTask

QUESTION = "What is the capital of France?"
SnapCompare = Callable[..., bool]


async def _wait(pilot: Pilot[Any], cond: Callable[[], bool]) -> None:
    for _ in range(300):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


def _asking(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await _wait(pilot, lambda: app.runner is not None)
        app.query_one("#prompt", Input).value = QUESTION
        await pilot.press("enter")
        # the run must have started (and then finished) before the picture is taken
        await _wait(pilot, lambda: app._next_run >= 1 and app._run is None)
        if keys:
            await pilot.press(*keys)
            await pilot.pause(0.2)
        # expanding blocks scrolls them into view; pin the scroll for a stable picture
        app.query_one("#chat").scroll_home(animate=False)
        # a blinking cursor is drawn on or off depending on when the picture is taken
        app.query_one("#prompt", Input).cursor_blink = False
        await pilot.pause(0.1)

    return run_before


def test_snapshot_welcome_80x24(snap_compare: SnapCompare) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await _wait(pilot, lambda: pilot.app.runner is not None)  # type: ignore[attr-defined]

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=ready)


def test_snapshot_answer_with_steps_100x30(snap_compare: SnapCompare) -> None:
    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=_asking())


def test_snapshot_step_details_80x24(snap_compare: SnapCompare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_asking("ctrl+t"))


def test_snapshot_light_theme_80x24(snap_compare: SnapCompare) -> None:
    write_config('[tui]\ntheme = "textual-light"\n')
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=_asking())


def test_snapshot_first_run_80x24(snap_compare: SnapCompare) -> None:
    release = threading.Event()

    def model(progress: Callable[[float | None, str], None]) -> None:
        progress(1.0, "ready")

    def wiki(progress: Callable[[float | None, str], None]) -> None:
        progress(0.4, "4,000 passages · 5,000/s · indexing")
        release.wait(30)

    tasks = [
        SetupTask("Default model: SmolLM2-135M-Instruct, Q4_1 (98 MB, Apache-2.0)", "m", model),
        SetupTask("Starter wiki: 10k Wikipedia vital articles (CC BY-SA 4.0)", "w", wiki),
    ]

    async def midway(pilot: Pilot[Any]) -> None:
        def at_40() -> bool:
            screen = pilot.app.screen
            return isinstance(screen, FirstRunScreen) and "4,000" in str(
                screen.query_one("#detail-1").render())

        await _wait(pilot, at_40)
        await pilot.pause()

    try:
        assert snap_compare(make_app(setup=tasks), terminal_size=(80, 24), run_before=midway)
    finally:
        release.set()


def test_snapshot_problem_80x24(snap_compare: SnapCompare) -> None:
    problem = Problem("No wiki index named 'mywiki'",
                      "Indexes here: starter. The agent will answer without searching.",
                      "edgeagent wiki build mywiki FILE  (or `edgeagent wiki starter`)")
    app = make_app(backend=FakeBackend(), problems=[problem])
    assert snap_compare(app, terminal_size=(80, 24))
