"""`ModelSwitcher`: the F3 dialog — registered models, then the catalog, with downloads.

Choosing a registered model dismisses with its name. Choosing a catalog entry
not pulled yet first compares its RAM estimate with the memory available now
(refused with a message when it does not fit), then pulls it on a worker
thread (`edgeagent.models.pull`, from the Hugging Face Hub) with a progress bar
and the stage in words, and dismisses with the new name. Esc cancels (a
running download finishes in the background and is registered). Not covered:
deleting models, choosing a quantization.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from edgeagent.errors import UserError
from edgeagent.models.catalog import CatalogEntry

Report = Callable[[str, float | None, str], None]
Puller = Callable[[str, Report], str]  # catalog name, report -> registered name


class ModelSwitcher(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Cancel")]

    def __init__(self, models: list[tuple[str, str]], catalog: list[CatalogEntry],
                 pull: Puller, free_ram_mb: int | None) -> None:
        super().__init__(classes="dialog", id="model-switcher")
        self.models = models
        have = {name for name, _ in models}
        self.catalog = {e.name: e for e in catalog if e.name not in have}
        self.pull = pull
        self.free_ram_mb = free_ram_mb
        self.busy = False

    def compose(self) -> ComposeResult:
        options: list[Option | None] = [Option(Text(label), id=f"model:{name}")
                                        for name, label in self.models]
        if self.catalog:
            if options:
                options.append(None)  # a separator
            for e in self.catalog.values():
                fits = self.free_ram_mb is None or e.ram_mb <= self.free_ram_mb
                label = Text.assemble(
                    ("↓ ", "bold"), e.name,
                    f" · {e.params} · {e.quant} · {e.download_mb / 1000:.1f} GB download · "
                    f"{e.ram_mb / 1000:.1f} GB RAM", ("" if fits else " · too big", "red"))
                options.append(Option(label, id=f"catalog:{e.name}"))
        with Vertical(classes="dialog-box"):
            yield Static(Text("Switch model", style="bold"))
            if options:
                yield OptionList(*options, id="switcher-list")
            else:
                yield Static("No models: `edgeagent models pull NAME`")
            yield Static("", id="switcher-detail")
            yield ProgressBar(total=100, show_eta=False, id="switcher-bar")
            yield Static("Enter choose (↓ downloads from the Hugging Face Hub) · Esc cancel",
                         classes="dialog-keys")

    def on_mount(self) -> None:
        self.query_one("#switcher-bar", ProgressBar).display = False

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        kind, _, name = str(event.option.id).partition(":")
        entry = self.catalog.get(name) if kind == "catalog" else None
        if entry is not None and not self.busy:
            self._detail(f"{entry.quality} · {entry.license}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if self.busy:
            return
        kind, _, name = str(event.option.id).partition(":")
        if kind == "model":
            self.dismiss(name)
            return
        entry = self.catalog[name]
        if self.free_ram_mb is not None and entry.ram_mb > self.free_ram_mb:
            self._detail(f"{entry.name} needs about {entry.ram_mb / 1000:.1f} GB of RAM; "
                         f"{self.free_ram_mb / 1000:.1f} GB is available. Choose a smaller "
                         "model.", error=True)
            return
        self.busy = True
        bar = self.query_one("#switcher-bar", ProgressBar)
        bar.display = True
        bar.update(total=None)
        self._detail(f"pulling {entry.name} from {entry.repo}…")
        self._pull(entry.name)

    @work(thread=True, exclusive=True, group="model-pull")
    def _pull(self, name: str) -> None:
        def report(stage: str, fraction: float | None, detail: str) -> None:
            self.app.call_from_thread(self._progress, stage, fraction, detail)

        try:
            registered = self.pull(name, report)
        except UserError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # a bug or OS error: explain, never crash the app
            self.app.log.error(traceback.format_exc())
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.app.call_from_thread(self._done, registered)

    def _progress(self, stage: str, fraction: float | None, detail: str) -> None:
        bar = self.query_one("#switcher-bar", ProgressBar)
        if fraction is None:
            bar.update(total=None)
        else:
            bar.update(total=100, progress=100 * fraction)
        self._detail(f"{stage}: {detail}")

    def _failed(self, message: str) -> None:
        self.busy = False
        self.query_one("#switcher-bar", ProgressBar).display = False
        self._detail(message, error=True)

    def _done(self, name: str) -> None:
        self.busy = False
        if self.is_attached and self.app.screen is self:
            self.dismiss(name)

    def _detail(self, text: str, *, error: bool = False) -> None:
        self.query_one("#switcher-detail", Static).update(
            Text(text, style="bold red" if error else ""))

    def action_close(self) -> None:
        self.dismiss(None)


def switcher_for(backend: object, models: list[tuple[str, str]]) -> ModelSwitcher:
    """The switcher for the app's backend; a backend without `catalog`/`pull_model` (a test
    fake) gets the registered models only."""
    catalog = getattr(backend, "catalog", None)
    pull = getattr(backend, "pull_model", None)
    if catalog is None or pull is None:
        def refuse(name: str, report: Report) -> str:
            raise UserError("this backend cannot download models")

        return ModelSwitcher(models, [], refuse, None)
    from edgeagent.models.catalog import available_ram_mb

    return ModelSwitcher(models, catalog(), pull, available_ram_mb())
