"""`EdgeAgentApp`, the Textual chat, and `run_app(args)`, its entry from the CLI.

The app owns the store, the current session and at most one running answer.
A question runs on a worker thread (`AgentRunner.run`); events come back as
`AgentEventMessage`s (thread-safe `post_message`) tagged with a run id, so
after Esc a late event of the stopped run is dropped. Every user message is
committed before the answer starts, the answer row is updated at each step
(and about once a second while streaming), so a kill loses at most the last
second of streamed text.

Not covered here: what the widgets look like (widgets/, app.tcss), how the
runner is built (runner.py, backend.py).
"""

from __future__ import annotations

import argparse
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, ListView, Static

from edgeagent.agent.events import Event
from edgeagent.engines.base import Message as ChatMessage
from edgeagent.errors import UserError
from edgeagent.tui import export
from edgeagent.tui.backend import Backend, Problem
from edgeagent.tui.config import DEFAULT_KEYS, TuiConfig
from edgeagent.tui.runner import AgentRunner, RunSettings
from edgeagent.tui.screens.dialogs import ChoicePrompt, Confirm, SettingsPrompt, TextPrompt
from edgeagent.tui.screens.logs import LogScreen
from edgeagent.tui.screens.problem import ProblemScreen
from edgeagent.tui.screens.setup import FirstRunScreen, SetupTask
from edgeagent.tui.store import Session, Store
from edgeagent.tui.turn import Turn
from edgeagent.tui.widgets.chat import AnswerView, UserMessage
from edgeagent.tui.widgets.sessions import SessionItem, SessionList
from edgeagent.tui.widgets.status import StatusBar

SHOWN = ("new_chat", "cancel", "export_markdown")
WELCOME = ("Ask a question. The agent answers in steps (Thought, Code, Observation); "
           "open a step to see its code and what it found.\n"
           "Ctrl+P lists every command.")
SAVE_EVERY_S = 1.0


class AgentEventMessage(Message):
    def __init__(self, run_id: int, event: Event) -> None:
        super().__init__()
        self.run_id, self.event = run_id, event


class RunFinished(Message):
    def __init__(self, run_id: int, record: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.run_id, self.record, self.error = run_id, record, error


class _Run:
    """The answer in progress."""

    def __init__(self, run_id: int, message_id: int, view: AnswerView) -> None:
        self.run_id, self.message_id, self.view = run_id, message_id, view
        self.started = time.monotonic()
        self.saved = 0.0


class EdgeAgentApp(App[int]):
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
        self.notes: list[str] = []
        self.session: Session | None = None
        self.runner: AgentRunner | None = None
        self.runner_error: str | None = None
        self._runner_ready = threading.Event()
        self._one_run = threading.Lock()  # a stopped run finishes before the next starts
        self._run: _Run | None = None
        self._next_run = 0
        self._orphans: dict[int, int] = {}  # stopped run id -> its message id
        self._details = False
        self.set_keymap(self.config.keymap())
        if self.config.theme in self.available_themes:
            self.theme = self.config.theme
        else:
            self.config.problems.append(f"unknown theme {self.config.theme!r}")

    # -- layout --------------------------------------------------------------

    @property
    def main(self) -> Screen[Any]:
        """The chat screen (the bottom of the stack), whatever is shown over it."""
        return self.screen_stack[0]

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

    def note(self, line: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {line}")
        self.log(line)

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
        finally:
            self._runner_ready.set()

    def _runner_loaded(self, runner: AgentRunner) -> None:
        self.note(f"model loaded: {runner.model_label} {runner.quant}")
        self.main.query_one(StatusBar).set(model=runner.model_label, quant=runner.quant)

    def _runner_failed(self, message: str) -> None:
        self.note(f"model failed: {message}")
        self.main.query_one(StatusBar).set(model="no model", quant="")
        from edgeagent.tui.backend import MODEL_FIX

        self.push_screen(ProblemScreen("The model could not be loaded", message, MODEL_FIX))

    # -- sessions ----------------------------------------------------------------

    def _refresh_sessions(self) -> None:
        self.main.query_one(SessionList).show(self.store.sessions(),
                                         self.session.id if self.session else None)

    def open_session(self, session_id: int | None) -> None:
        self.session = self.store.session(session_id) if session_id is not None else None
        chat = self.main.query_one("#chat", VerticalScroll)
        chat.remove_children()
        widgets: list[Any] = []
        if self.session is None:
            widgets.append(Static(WELCOME, id="welcome"))
        else:
            for m in self.store.messages(self.session.id):
                if m.role == "user":
                    widgets.append(UserMessage(m.content))
                else:
                    turn = Turn.from_stored(m.content, m.status, m.steps)
                    widgets.append(AnswerView(turn, dark=self.current_theme.dark))
        chat.mount_all(widgets)
        chat.scroll_end(animate=False)
        self._refresh_sessions()

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        item = event.item
        if isinstance(item, SessionItem) and (self.session is None
                                              or item.session.id != self.session.id):
            if self._run is not None:
                self.notify("An answer is running; Esc stops it.", severity="warning")
                return
            self.open_session(item.session.id)
            self.main.query_one("#prompt", Input).focus()

    def action_new_chat(self) -> None:
        if self._run is not None:
            self.action_cancel()
        self.open_session(None)
        self.main.query_one("#prompt", Input).focus()

    def action_rename_chat(self) -> None:
        session = self.session
        if session is None:
            self.notify("No chat to rename yet.")
            return

        def done(title: str | None) -> None:
            if title:
                self.store.rename_session(session.id, title)
                self.session = self.store.session(session.id)
                self._refresh_sessions()

        self.push_screen(TextPrompt("Rename chat", session.title), done)

    def action_delete_chat(self) -> None:
        session = self.session
        if session is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                if self._run is not None:
                    self.action_cancel()
                self.store.delete_session(session.id)
                self.note(f"deleted chat {session.title!r}")
                self.open_session(None)

        self.push_screen(Confirm(f"Delete the chat {session.title!r}?"), done)

    def action_toggle_sidebar(self) -> None:
        sidebar = self.main.query_one("#sessions")
        sidebar.display = not sidebar.display

    # -- asking ---------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        question = event.value.strip()
        if not question:
            return
        if self._run is not None:
            self.notify("An answer is running; Esc stops it.", severity="warning")
            return
        if self.runner_error is not None:
            self.notify(f"No model: {self.runner_error}", severity="error", timeout=8)
            return
        event.input.value = ""
        self.ask(question)

    def _history(self) -> list[ChatMessage]:
        if self.session is None:
            return []
        return [{"role": m.role, "content": m.content}
                for m in self.store.messages(self.session.id)
                if m.role == "user" or m.status == "done"]

    def ask(self, question: str) -> None:
        if self.session is None:
            title = question if len(question) <= 48 else question[:47] + "…"
            model = self.runner.model_label if self.runner else (self.model_spec or "")
            self.session = self.store.create_session(title, model=model,
                                                     wiki=self.settings.wiki or "")
        history = self._history()
        self.store.add_message(self.session.id, "user", question)
        message_id = self.store.add_message(self.session.id, "assistant", "",
                                            status="streaming")
        chat = self.main.query_one("#chat", VerticalScroll)
        for welcome in chat.query("#welcome"):
            welcome.remove()
        view = AnswerView(dark=self.current_theme.dark, live=True)
        chat.mount_all([UserMessage(question), view])
        chat.scroll_end(animate=False)
        self._next_run += 1
        self._run = _Run(self._next_run, message_id, view)
        self.main.query_one(StatusBar).set(state="thinking…")
        self._refresh_sessions()
        settings = RunSettings(**vars(self.settings))
        self._answer(self._next_run, question, history, settings)

    @work(thread=True, group="answer")
    def _answer(self, run_id: int, question: str, history: list[ChatMessage],
                settings: RunSettings) -> None:
        self._runner_ready.wait()
        runner = self.runner
        if runner is None:
            self.post_message(RunFinished(run_id, None, self.runner_error or "no model"))
            return
        def on_event(event: Event) -> None:
            self.post_message(AgentEventMessage(run_id, event))

        try:
            with self._one_run:
                current = self._run
                if current is None or current.run_id != run_id:  # stopped while queued
                    self.post_message(RunFinished(run_id, None, None))
                    return
                record = runner.run(question, history=history, settings=settings,
                                    on_event=on_event)
        except UserError as exc:
            self.post_message(RunFinished(run_id, None, str(exc)))
        except Exception as exc:
            self.call_from_thread(self.note, traceback.format_exc())
            self.post_message(RunFinished(run_id, None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(RunFinished(run_id, record, None))

    def on_agent_event_message(self, message: AgentEventMessage) -> None:
        run = self._run
        if run is None or message.run_id != run.run_id:
            return
        change = run.view.apply(message.event)
        now = time.monotonic()
        if change in ("step", "answer", "end") or (change == "live"
                                                    and now - run.saved > SAVE_EVERY_S):
            self._save(run)
        if change != "none":
            self.main.query_one("#chat", VerticalScroll).scroll_end(animate=False)

    def _save(self, run: _Run, record: dict[str, Any] | None = None) -> None:
        turn = run.view.turn
        self.store.update_message(run.message_id, content=turn.content(), status=turn.status,
                                  steps=turn.steps_json(), record=record)
        run.saved = time.monotonic()

    def on_run_finished(self, message: RunFinished) -> None:
        run = self._run
        if run is None or message.run_id != run.run_id:
            orphan = self._orphans.pop(message.run_id, None)
            if orphan is not None and message.record is not None:
                self.store.update_message(orphan, record=message.record)
            return
        turn = run.view.turn
        if message.error is not None:
            turn.error = message.error
            run.view.mark("error")
            self.note(f"answer failed: {message.error}")
        elif turn.status == "streaming":  # ended without FinalAnswer / Cancelled
            run.view.mark("error" if turn.error else "done")
        self._save(run, message.record)
        self._run = None
        self.main.query_one(StatusBar).set(state="", tok_s=self._tok_s(run, message.record))

    @staticmethod
    def _tok_s(run: _Run, record: dict[str, Any] | None) -> float | None:
        try:
            assert record is not None
            n = float(record["tokens"]["completion"])
            secs = float(record["timings"]["generate_s"])
            if n > 0 and secs > 0:
                return n / secs
        except (AssertionError, KeyError, TypeError, ValueError):
            pass
        secs = time.monotonic() - run.started
        return run.view.turn.tokens / secs if run.view.turn.tokens and secs > 0 else None

    def action_cancel(self) -> None:
        run = self._run
        if run is None:
            return
        if self.runner is not None:
            self.runner.cancel()
        run.view.mark("cancelled")
        self._save(run)
        self._orphans[run.run_id] = run.message_id
        self._run = None
        self.main.query_one(StatusBar).set(state="stopped")
        self.note("answer stopped (Esc)")

    # -- details, copy, export -----------------------------------------------

    def action_toggle_details(self) -> None:
        self._details = not self._details
        for view in self.main.query(AnswerView):
            view.set_collapsed(not self._details)

    def _last_turn(self, want_code: bool) -> str | None:
        if self.session is None:
            return None
        for m in reversed(self.store.messages(self.session.id)):
            if m.role != "assistant":
                continue
            if not want_code and m.status == "done":
                return m.content
            if want_code:
                for s in reversed(m.steps):
                    if s.get("code"):
                        return str(s["code"])
        return None

    def action_copy_answer(self) -> None:
        self._copy(self._last_turn(False), "answer")

    def action_copy_code(self) -> None:
        self._copy(self._last_turn(True), "code block")

    def _copy(self, text: str | None, what: str) -> None:
        if text is None:
            self.notify(f"No {what} to copy yet.")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last {what} ({len(text)} characters).")

    def _export(self, kind: str) -> Path | None:
        if self.session is None:
            self.notify("Nothing to export yet: ask something first.")
            return None
        messages = self.store.messages(self.session.id)
        if kind == "md":
            text, suffix = export.chat_markdown(self.session, messages), ".md"
        else:
            text, suffix = export.trajectories_jsonl(messages), ".jsonl"
        try:
            path = export.write_export(self.config.exports(),
                                       export.export_name(self.session, suffix), text)
        except OSError as exc:
            self.notify(f"Export failed: {exc}", severity="error")
            return None
        self.note(f"exported {path}")
        self.notify(f"Saved {path}", title="Export", timeout=8)
        return path

    def action_export_markdown(self) -> None:
        self._export("md")

    def action_export_jsonl(self) -> None:
        self._export("jsonl")

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

        from edgeagent.tui.screens.model_switcher import switcher_for

        self.push_screen(switcher_for(self.backend, choices), done)

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


def run_app(args: argparse.Namespace) -> int:
    """Open the app (the CLI's default command); returns the exit status."""
    from edgeagent import locations
    from edgeagent.tui.backend import LocalBackend, preflight
    from edgeagent.tui.config import load_config

    config = load_config()
    wiki = getattr(args, "wiki", None) or config.wiki
    model = getattr(args, "model", None)
    plan = preflight(model, wiki)
    store = Store(locations.history_db())
    app = EdgeAgentApp(store=store, backend=LocalBackend(), config=config, model=model,
                       wiki=plan.wiki, setup=plan.tasks, problems=plan.problems)
    try:
        code = app.run()
    finally:
        if app.runner is not None:
            app.runner.close()
        store.close()
    return int(code or 0)
