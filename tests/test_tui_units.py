"""TUI parts without Textual: the turn reducer, the loop runner, config, preflight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from test_tui_fakes import scripted_events, write_config

from edgeagent.agent.events import Event, FinalAnswer, StepStart, Token
from edgeagent.engines.base import Completion
from edgeagent.tui.backend import preflight
from edgeagent.tui.config import DEFAULT_KEYS, load_config
from edgeagent.tui.runner import LoopRunner, RunSettings
from edgeagent.tui.turn import Turn
from edgeagent.tui.widgets.step import display_observation


def test_turn_folds_the_scripted_run_and_round_trips() -> None:
    turn = Turn()
    changes = [turn.apply(e) for e in scripted_events("q")]
    assert changes[-1] == "answer" and turn.status == "done"
    assert [s.step for s in turn.steps] == [1, 2]
    assert turn.steps[0].tally == "2/3 agree" and turn.steps[0].done
    again = Turn.from_stored(turn.content(), turn.status, turn.steps_json())
    assert again.steps == turn.steps and again.answer == turn.answer


def test_display_observation_drops_the_model_header() -> None:
    assert display_observation("Call id: call_3\nObservation:\nExecution logs:\nhi\n") == \
        "Execution logs:\nhi"


class FakeEngine:
    def __init__(self, pieces: list[str], finish: str = "stop") -> None:
        self.pieces, self.finish, self.cancelled = pieces, finish, False
        self.seen: Any = None

    def generate(self, messages: Any, **kw: Any) -> list[Completion]:
        self.seen = list(messages)
        for p in self.pieces:
            kw["on_token"](0, p)
        return [Completion("".join(self.pieces), self.finish,  # type: ignore[arg-type]
                           prompt_tokens=5, completion_tokens=len(self.pieces))]

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        pass


ANSWER = ["Thought: Greet.\nCode:\n```py\n", 'final_answer("Hello")\n```']


def test_loop_runner_streams_then_answers() -> None:
    events: list[Event] = []
    engine = FakeEngine(ANSWER)
    runner = LoopRunner(engine, "m", "Q4_1")
    record = runner.run("hi", on_event=events.append,
                        history=[{"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}],
                        settings=RunSettings())
    assert isinstance(events[1], StepStart)
    assert [e.text for e in events if isinstance(e, Token)] == ANSWER
    assert events[-1] == FinalAnswer(answer="Hello", step=1)
    assert engine.seen[-1]["role"] == "user" and "hi" in engine.seen[-1]["content"]
    assert record["answer"] == "Hello" and record["model"] == "m"
    assert record["tokens"]["completion"] == 2
    runner.cancel()
    assert engine.cancelled


def test_loop_runner_reports_cancel() -> None:
    events: list[Event] = []
    LoopRunner(FakeEngine(["x"], "cancelled"), "m", "q").run(
        "hi", on_event=events.append, history=[], settings=RunSettings())
    assert type(events[-1]).__name__ == "Cancelled"


def test_config_defaults_bad_values_and_keys() -> None:
    cfg = load_config()
    assert cfg.keymap()["new_chat"] == "ctrl+n" and cfg.votes == 1
    write_config('wiki = "mywiki"\n[tui]\nvotes = "many"\ntemperature = 0.2\n'
                 '[keys]\ncancel = "ctrl+g"\n')
    cfg = load_config()
    assert (cfg.wiki, cfg.votes, cfg.temperature) == ("mywiki", 1, 0.2)
    assert cfg.keymap()["cancel"] == "ctrl+g" and len(cfg.keymap()) == len(DEFAULT_KEYS)
    assert any("votes" in p for p in cfg.problems)
    write_config("[tui]\nmax_steps = 2\nmax_tokens = 128\n")
    cfg = load_config()
    assert (cfg.max_steps, cfg.max_tokens, cfg.problems) == (2, 128, [])
    write_config("[tui]\nmax_tokens = 3\n")
    cfg = load_config()
    assert cfg.max_tokens == 512 and any("max_tokens" in p for p in cfg.problems)
    write_config("not = [toml")
    assert load_config().problems


def test_preflight_first_run_wants_model_and_starter() -> None:
    plan = preflight(None, "starter")
    assert [t.label.split(":")[0] for t in plan.tasks] == ["Default model", "Starter wiki"]
    assert plan.problems == [] and plan.tasks[1].optional


def test_preflight_explains_missing_model_and_index(tmp_path: Path) -> None:
    plan = preflight(str(tmp_path / "nope.gguf"), "mywiki")
    assert [p.title for p in plan.problems] == ["The model is missing or broken",
                                                "No wiki index named 'mywiki'"]
    assert "model file not found" in plan.problems[0].message
    assert "edgeagent wiki build mywiki" in plan.problems[1].fix
    assert plan.wiki is None and plan.tasks == []


def test_help_does_not_import_textual() -> None:
    code = ("import sys; from edgeagent.cli import build_parser; build_parser(); "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_markdown_export_skips_steps_with_nothing_to_show() -> None:
    from edgeagent.tui.export import chat_markdown
    from edgeagent.tui.store import Session, StoredMessage

    session = Session(1, "hello", "t", "t")
    msgs = [StoredMessage(1, 1, "user", "hi", "done", "t"),
            StoredMessage(2, 1, "assistant", "Hello!", "done", "t", steps=[{"step": 1}])]
    assert chat_markdown(session, msgs) == "# hello\n\n## You\n\nhi\n\n## edgeagent\n\n" \
        "**Answer:** Hello!\n"


def test_vote_view_shows_cut_candidates_as_cut_not_as_errors() -> None:
    from edgeagent.agent.events import Candidate, Vote
    from edgeagent.agent.loop import CUT_ERROR
    from edgeagent.tui.widgets.step import candidate_rows

    turn = Turn()
    turn.apply(StepStart(1))
    for i, (ok, cut) in enumerate([(True, False), (False, True), (False, False)]):
        turn.apply(Candidate(1, i, "t", None if cut else "x = 1", "k", ok, "",
                             error=CUT_ERROR if cut else (None if ok else "SyntaxError"),
                             cut=cut))
    turn.apply(Vote(1, 0, 1, 3))
    title, rows = candidate_rows(turn.steps[0])
    assert title == "3 candidates (1 cut)"
    assert rows[0].startswith("✓ #0 (chosen)") and rows[2].startswith("✗ #2: SyntaxError")
    assert rows[1].startswith("✂ #1: cut") and CUT_ERROR not in rows[1]
    again = Turn.from_stored(turn.content(), turn.status, turn.steps_json())
    assert candidate_rows(again.steps[0]) == (title, rows)  # survives the session store
