"""`EdgeAgentApp`, the Textual chat, and `run_app(args)`, its entry from the CLI.

The app owns the store, the current session, the runner and at most one
running answer. This file holds the layout, loading the runner (on a worker
thread), and the model / wiki / settings / logs / theme commands; the app's
other parts are mixins over `state.AppState` (the shared state): `ChatsMixin`
(chats.py: the chats list, copy, export) and `AskingMixin` (asking.py: a
question, its streamed answer, Esc).

Not covered here: what the widgets look like (widgets/, app.tcss), how the
runner is built (runner.py, backend.py).
"""

from __future__ import annotations

import argparse
import threading
import traceback
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from edgeagent.errors import UserError
from edgeagent.tui.asking import AskingMixin
from edgeagent.tui.backend import Backend, Problem
from edgeagent.tui.chats import WELCOME, ChatsMixin
from edgeagent.tui.config import DEFAULT_KEYS, TuiConfig
from edgeagent.tui.runner import AgentRunner, RunSettings
from edgeagent.tui.screens.dialogs import ChoicePrompt, SettingsPrompt
from edgeagent.tui.screens.logs import LogScreen
from edgeagent.tui.screens.problem import ProblemScreen
from edgeagent.tui.screens.setup import FirstRunScreen, SetupTask
from edgeagent.tui.store import Store
from edgeagent.tui.widgets.sessions import SessionList
from edgeagent.tui.widgets.status import StatusBar

SHOWN = ("new_chat", "cancel", "export_markdown")


class EdgeAgentApp(ChatsMixin, AskingMixin):
    """The chat app: layout, runner loading, and the model/wiki/settings commands."""

    CSS_PATH = "styles/app.tcss"
    TITLE = "edgeagent"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, action, desc, id=action, show=action in SHOWN)
        for action, (key, desc) in DEFAULT_KEYS.items()
    ]

    def __init__(self, *, store: Store, backend: Backend, config: TuiConfig | None = None,
                 model: str | None = None, wiki: str | None = None,
                 setup: list[SetupTask] | None = None,
                 problems: list[Problem] | None = None) -> None:
        super().__init__()
        self.store, self.backend = store, backend
        self.config = config or TuiConfig()
        self.model_spec = model
        self.settings = RunSettings(votes=self.config.votes,
                                    temperature=self.config.temperature,
                                    max_steps=self.config.max_steps, wiki=wiki)
        self.setup_tasks = setup or []
        self.problems = list(problems or [])
        self.notes = []
        self.session = None
        self.runner = None
        self.runner_error = None
        self._runner_ready = threading.Event()
        self._one_run = threading.Lock()
        self._run = None
        self._next_run = 0
        self._orphans = {}
        self._details = False
        self.set_keymap(self.config.keymap())
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        else:
            self.config.problems.append(f"unknown theme {self.config.theme!r}")

    # -- layout --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # chat actions only while the chat itself is on top (not under a dialog)
        return not (action in DEFAULT_KEYS and len(self.screen_stack) > 1)

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield SessionList(id="sessions")
            with Vertical(id="chat-pane"):
                yield VerticalScroll(Static(WELCOME, id="welcome"), id="chat")
                yield Input(placeholder="Ask a question · Enter send · Esc stop · Ctrl+P "
                            "commands", id="prompt")
        yield StatusBar()
        yield Footer()

    def on_mount(self) -> None:
        self.main.query_one("#sessions").display = self.size.width >= 100
        status = self.main.query_one(StatusBar)
        status.set(votes=self.settings.votes)
        self._refresh_wiki_status()
        for line in self.config.problems:
            self.note(f"config: {line}")
            self.notify(line, title="config.toml", severity="warning", timeout=8)
        sessions = self.store.sessions()
        if sessions:
            self.open_session(sessions[0].id)
        else:
            self._refresh_sessions()
        self.main.query_one("#prompt", Input).focus()
        for p in self.problems:
            self.push_screen(ProblemScreen(p.title, p.message, p.fix))
        if self.setup_tasks:
            self.push_screen(FirstRunScreen(self.setup_tasks), self._after_setup)
        else:
            self._load_runner()

    def _after_setup(self, ok: bool | None) -> None:
        self._refresh_wiki_status()
        self._load_runner()

    def _refresh_wiki_status(self) -> None:
        wiki = self.settings.wiki
        passages = None
        if wiki:
            try:
                passages = self.backend.wikis().get(wiki)
            except UserError as exc:
                self.note(str(exc))
        self.main.query_one(StatusBar).set(wiki=wiki, passages=passages)

    # -- the runner ------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def _load_runner(self) -> None:
        self._runner_ready.clear()
        old, self.runner, self.runner_error = self.runner, None, None
        if old is not None:
            old.close()
        self.call_from_thread(self.main.query_one(StatusBar).set, model="loading model…", quant="")
        try:
            runner = self.backend.load_runner(self.model_spec)
        except UserError as exc:
            self.runner_error = str(exc)
            self.call_from_thread(self._runner_failed, str(exc))
        except Exception as exc:
            self.runner_error = f"{type(exc).__name__}: {exc}"
            self.call_from_thread(self.note, traceback.format_exc())
            self.call_from_thread(self._runner_failed, self.runner_error)
        else:
            self.runner = runner
            self.call_from_thread(self._runner_loaded, runner)
            self._warn_if_weakly_contained()
        finally:
            self._runner_ready.set()

    def _warn_if_weakly_contained(self) -> None:
        """A toast when this kernel gives the code tool only its Python guard."""
        warning = self.backend.containment_warning()
        if warning:
            self.call_from_thread(self.notify, warning, severity="warning", timeout=15)

    def _runner_loaded(self, runner: AgentRunner) -> None:
        self.note(f"model loaded: {runner.model_label} {runner.quant}")
        import pathlib

        from edgeagent.models.default import is_toy_model

        engine_path = getattr(getattr(runner, "engine", None), "path", None)
        self.main.query_one(StatusBar).set(
            model=runner.model_label, quant=runner.quant,
            toy=engine_path is not None and is_toy_model(pathlib.Path(engine_path)))

    def _runner_failed(self, message: str) -> None:
        self.note(f"model failed: {message}")
        self.main.query_one(StatusBar).set(model="no model", quant="")
        from edgeagent.tui.backend import MODEL_FIX

        self.push_screen(ProblemScreen("The model could not be loaded", message, MODEL_FIX))

    # -- model, wiki, settings, logs, theme -------------------------------------

    def action_switch_model(self) -> None:
        try:
            choices = self.backend.models()
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return

        def done(name: str | None) -> None:
            if name and self._run is None:
                self.model_spec = name
                self.note(f"switching model to {name}")
                self._load_runner()

        self.push_screen(ChoicePrompt("Switch model", choices,
                                      "No models registered: `edgeagent models add FILE`"), done)

    def action_switch_wiki(self) -> None:
        try:
            wikis = self.backend.wikis()
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        choices = [(name, f"{name} · {n:,} passages") for name, n in wikis.items()]

        def done(name: str | None) -> None:
            if name:
                self.settings.wiki = name
                self._refresh_wiki_status()

        self.push_screen(ChoicePrompt("Switch wiki index", choices,
                                      "No indexes: `edgeagent wiki starter`"), done)

    def action_settings(self) -> None:
        s = self.settings

        def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                votes, temp = int(values["votes"]), float(values["temperature"])
                steps = int(values["max_steps"])
                if not (1 <= votes <= 64 and 0 <= temp <= 2 and 1 <= steps <= 50):
                    raise ValueError
            except ValueError:
                self.notify("votes 1–64, temperature 0–2, max steps 1–50", severity="error")
                return
            s.votes, s.temperature, s.max_steps = votes, temp, steps
            self.main.query_one(StatusBar).set(votes=votes)

        self.push_screen(SettingsPrompt(s.votes, s.temperature, s.max_steps), done)

    def action_show_logs(self) -> None:
        self.push_screen(LogScreen(self.notes))

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        keymap = self.config.keymap()
        for action, (_, description) in DEFAULT_KEYS.items():
            yield SystemCommand(description, f"key: {keymap[action]}",
                                getattr(self, f"action_{action}"))

    def on_unmount(self) -> None:
        run, self._run = self._run, None
        if run is not None:  # quitting mid-answer: stop it, keep what streamed
            if self.runner is not None:
                self.runner.cancel()
            run.view.turn.status = "cancelled"
            self._save(run)


def create_app(model: str | None = None, wiki: str | None = None) -> EdgeAgentApp:
    """The app as `edgeagent` starts it: user config, history, the local model and wiki
    (also what the installed-app check drives headless)."""
    from edgeagent import locations
    from edgeagent.tui.backend import LocalBackend, preflight
    from edgeagent.tui.config import load_config

    config = load_config()
    plan = preflight(model, wiki or config.wiki)
    store = Store(locations.history_db())
    return EdgeAgentApp(store=store, backend=LocalBackend(), config=config, model=model,
                        wiki=plan.wiki, setup=plan.tasks, problems=plan.problems)


def run_app(args: argparse.Namespace) -> int:
    """Open the app (the CLI's default command); returns the exit status."""
    app = create_app(getattr(args, "model", None), getattr(args, "wiki", None))
    store = app.store
    try:
        code = app.run()
    finally:
        if app.runner is not None:
            app.runner.close()
        store.close()
    # a crash inside the app (Textual prints its traceback) must not exit 0
    return int(code or app.return_code or 0)
