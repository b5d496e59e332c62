"""Plain and rich renderings of agent events, for `edgeagent ask`.

`RichPrinter` streams each step to a terminal (the thought and code as they are
generated, candidates and the vote, the observation); it is an event handler
and nothing else. Not covered: the full-screen app (edgeagent.tui).
"""

from __future__ import annotations

from typing import Any

from edgeagent.agent import events as ev


def _clip(text: str, limit: int = 1200) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"


class RichPrinter:
    """Writes events to a rich Console as they arrive."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.votes = 1

    def __call__(self, event: ev.Event) -> None:
        c = self.console
        if isinstance(event, ev.RunStart):
            self.votes = event.votes
            c.print(f"[dim]{event.model} · votes {event.votes} · max steps {event.max_steps}[/]")
        elif isinstance(event, ev.StepStart):
            title = "answer from memory" if event.fallback else f"Step {event.step}"
            c.rule(f"[bold]{title}")
        elif isinstance(event, ev.Token):
            if event.candidate == 0 and self.votes == 1:
                c.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
        elif isinstance(event, ev.Candidate):
            mark = "[yellow]✂[/]" if event.cut else "[green]✓[/]" if event.ok else "[red]✗[/]"
            what = event.error.splitlines()[0] if event.error else event.key
            c.print(f"{mark} candidate {event.index}: ", _clip(what, 100), markup=True,
                    highlight=False)
        elif isinstance(event, ev.Vote):
            c.print(f"[bold]vote:[/] candidate {event.chosen} "
                    f"({event.agree}/{event.total} agree, {len(event.groups)} groups)")
        elif isinstance(event, ev.Observation):
            if self.votes > 1:
                c.print(f"[cyan]Thought:[/] {event.thought}", highlight=False)
                if event.code:
                    from rich.syntax import Syntax

                    c.print(Syntax(event.code, "python", theme="ansi_dark"))
            else:
                c.print()
            style = "red" if event.error else "dim"
            c.print(_clip(event.text), style=style, markup=False, highlight=False)
        elif isinstance(event, ev.FinalAnswer):
            if event.from_fallback:
                c.print()
        elif isinstance(event, ev.AgentError):
            c.print(f"[red]error:[/] {event.message}", highlight=False)
        elif isinstance(event, ev.Cancelled):
            c.print("[yellow]cancelled[/]")
