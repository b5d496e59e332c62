"""The TUI's model switcher (F3) with the catalog: a catalog model downloaded from the stand-in
Hub inside the app with progress, and one too big for the free RAM refused with a message."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hub_standin import HubStandin
from test_models_pull import hf_env, hub, put  # noqa: F401
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import OptionList, ProgressBar, Static

from edgeagent.models import catalog
from edgeagent.models.registry import Registry
from edgeagent.tui.backend import LocalBackend
from edgeagent.tui.screens.model_switcher import ModelSwitcher, switcher_for

pytestmark = pytest.mark.anyio
pytest.importorskip("huggingface_hub")
UNSET = "unset"


class Host(App[None]):
    """A bare app that opens the switcher, as the chat app does on F3."""

    def __init__(self, screen: ModelSwitcher) -> None:
        super().__init__()
        self.switcher = screen
        self.result: str | None = UNSET

    def on_mount(self) -> None:
        self.push_screen(self.switcher, self._done)

    def _done(self, value: str | None) -> None:
        self.result = value


async def wait_for(pilot: Pilot[Any], cond: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.02)


async def choose(pilot: Pilot[Any], screen: ModelSwitcher, option_id: str) -> None:
    options = screen.query_one("#switcher-list", OptionList)
    options.highlighted = options.get_option_index(option_id)
    await pilot.pause()
    await pilot.press("enter")


def detail(screen: ModelSwitcher) -> str:
    return str(screen.query_one("#switcher-detail", Static).render())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_switcher_downloads_a_catalog_model_with_progress(
        hub: HubStandin, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    put(hub, "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        {"qwen2.5-0.5b-instruct-q4_k_m.gguf": tiny_gguf.read_bytes()})
    hub.delay_per_chunk = 0.01  # slow enough to see the bar move
    monkeypatch.setattr(catalog, "available_ram_mb", lambda: 64_000)
    backend = LocalBackend()
    screen = switcher_for(backend, backend.models())
    assert {e.name for e in screen.catalog.values()} == {e.name for e in catalog.load_catalog()}
    app = Host(screen)
    seen: list[str] = []
    async with app.run_test(size=(140, 30)) as pilot:
        await choose(pilot, screen, "catalog:qwen2.5-0.5b-instruct")

        def progressing() -> bool:
            text = detail(screen) if app.result == UNSET else ""
            seen.append(text)
            return app.result != UNSET or "download:" in text

        await wait_for(pilot, progressing)
        assert app.result == UNSET and screen.query_one("#switcher-bar", ProgressBar).display
        hub.delay_per_chunk = 0.0
        await wait_for(pilot, lambda: app.result != UNSET)
    assert app.result == "qwen2.5-0.5b-instruct"
    assert any("qwen2.5-0.5b-instruct-q4_k_m.gguf" in s for s in seen)
    entry = Registry.load().entries["qwen2.5-0.5b-instruct"]
    assert Path(entry.path).read_bytes() == tiny_gguf.read_bytes()
    # and it is now listed as a registered model, no longer as a download
    again = switcher_for(backend, backend.models())
    assert "qwen2.5-0.5b-instruct" not in again.catalog
    assert "qwen2.5-0.5b-instruct" in {name for name, _ in again.models}


async def test_switcher_refuses_a_model_that_does_not_fit_in_ram(
        hub: HubStandin, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setattr(catalog, "available_ram_mb", lambda: 1_000)
    backend = LocalBackend()
    screen = switcher_for(backend, backend.models())
    app = Host(screen)
    async with app.run_test(size=(140, 30)) as pilot:
        await choose(pilot, screen, "catalog:qwen2.5-7b-instruct")
        await pilot.pause(0.2)
        text = detail(screen)
        assert "needs about 5.8 GB of RAM" in text and "1.0 GB is available" in text
        assert app.result == UNSET and not screen.busy
    assert hub.requests == []  # nothing was asked of the Hub
    assert "qwen2.5-7b-instruct" not in Registry.load().entries
