"""Asking: a question goes to the runner on a worker thread, its events come
back as messages and fold into the answer on screen and in the store.

A question runs on a worker thread (`AgentRunner.run`); events come back as
`AgentEventMessage`s (thread-safe `post_message`) tagged with a run id, so
after Esc a late event of the stopped run is dropped. Every user message is
committed before the answer starts, the answer row is updated at each step
(and about once a second while streaming), so a kill loses at most the last
second of streamed text. At most one answer runs at a time.

`AskingMixin` is one part of `EdgeAgentApp` (app.py); not covered here: the
layout, the chats list (chats.py), loading the runner (app.py).
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from textual import work
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input

from edgeagent.agent.events import Event
from edgeagent.engines.base import Message as ChatMessage
from edgeagent.errors import UserError
from edgeagent.tui.runner import RunSettings
from edgeagent.tui.state import ActiveRun, AppState
from edgeagent.tui.widgets.chat import AnswerView, UserMessage
from edgeagent.tui.widgets.status import StatusBar

SAVE_EVERY_S = 1.0


class AgentEventMessage(Message):
    def __init__(self, run_id: int, event: Event) -> None:
        super().__init__()
        self.run_id, self.event = run_id, event


class RunFinished(Message):
    def __init__(self, run_id: int, record: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.run_id, self.record, self.error = run_id, record, error


class AskingMixin(AppState):
    """Asking, streaming, saving and stopping an answer (see the module doc)."""

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
        self._run = ActiveRun(self._next_run, message_id, view)
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

    def _save(self, run: ActiveRun, record: dict[str, Any] | None = None) -> None:
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
    def _tok_s(run: ActiveRun, record: dict[str, Any] | None) -> float | None:
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
