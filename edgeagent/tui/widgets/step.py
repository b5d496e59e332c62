"""`StepBlock`: one agent step as a collapsible block.

Inside: the Thought (Markdown), the Code (syntax-highlighted), the
Observation (monospace; more than `FOLD_LINES` lines are folded behind a
nested block), retrieved passages with their titles, and with voting the
tally in the title plus each candidate with its outcome. Not covered:
editing or re-running a step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rich.syntax import Syntax
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Collapsible, Markdown, Static

from edgeagent.tui.turn import StepView

FOLD_LINES = 8


_HEADER = re.compile(r"\A(?:Call id: call_\d+\n)?(?:Observation:\n)?")


def display_observation(text: str) -> str:
    """The observation without the 'Call id / Observation:' lines the model reads."""
    return _HEADER.sub("", text or "", count=1).rstrip()


def step_title(step: StepView) -> str:
    parts = ["Final answer from memory" if step.fallback else f"Step {step.step}"]
    if step.tally:
        parts.append(step.tally)
    if step.error:
        parts.append("error")
    elif not step.done:
        parts.append("running…")
    first = next((line.strip() for line in (step.code or "").splitlines() if line.strip()), "")
    if first:
        parts.append(first if len(first) <= 48 else first[:47] + "…")
    return " · ".join(parts)


def code_renderable(code: str, dark: bool) -> Syntax:
    return Syntax(code.rstrip(), "python", theme="ansi_dark" if dark else "ansi_light",
                  word_wrap=True, background_color="default")


class StepBlock(Collapsible):
    """A finished (or running) step; collapsed by default."""

    def __init__(self, step: StepView, *, dark: bool = True, collapsed: bool = True) -> None:
        self.view = step
        self.dark = dark
        super().__init__(*self._body(), title=step_title(step), collapsed=collapsed,
                         classes="step")

    def _body(self) -> Iterator[Widget]:
        s = self.view
        if s.thought:
            yield Markdown(s.thought.strip(), classes="thought")
        if s.code:
            yield Static(code_renderable(s.code, self.dark), classes="code")
        observation = display_observation(s.observation)
        if s.error:
            yield Static(Text(s.error.rstrip()), classes="obs error")
        elif observation:
            lines = observation.splitlines()
            head = "\n".join(lines[:FOLD_LINES])
            yield Static(Text(head), classes="obs")
            if len(lines) > FOLD_LINES:
                yield Collapsible(Static(Text("\n".join(lines[FOLD_LINES:])), classes="obs"),
                                  title=f"{len(lines) - FOLD_LINES} more lines",
                                  collapsed=True, classes="fold")
        for p in s.passages:
            title = str(p.get("title", ""))
            text = str(p.get("text", ""))
            body = Text.assemble((title, "bold"), "  ", text[:300] + ("…" if len(text) > 300
                                                                        else ""))
            yield Static(body, classes="passage")
        if s.candidates:
            title, rows = candidate_rows(s)
            yield Collapsible(Static(Text("\n".join(rows))), title=title, collapsed=True,
                              classes="fold")

    def refresh_view(self) -> None:
        """Re-render after the step changed (vote arrived, observation arrived)."""
        self.title = step_title(self.view)
        found = self.query_children(Collapsible.Contents)
        if not found:  # mounted a moment ago and not composed yet: retry after refresh
            self.call_after_refresh(self.refresh_view)
            return
        contents = found.first()
        contents.remove_children()
        contents.mount_all(list(self._body()))


def candidate_rows(s: StepView) -> tuple[str, list[str]]:
    """The vote view of a step: its title and one line per candidate. A candidate the
    straggler policy cut is shown as cut (✂), not as an error: it did not fail."""
    rows, cut = [], 0
    for c in sorted(s.candidates, key=lambda c: int(c.get("index", 0))):
        chosen = " (chosen)" if c.get("index") == s.chosen else ""
        if c.get("cut"):
            cut += 1
            rows.append(f"✂ #{c.get('index')}: cut, the vote was decided before it finished")
            continue
        mark = "✓" if c.get("ok") else "✗"
        outcome = c.get("error") or c.get("key") or ""
        rows.append(f"{mark} #{c.get('index')}{chosen}: {str(outcome)[:120]}")
    title = f"{len(s.candidates)} candidates" + (f" ({cut} cut)" if cut else "")
    return title, rows
