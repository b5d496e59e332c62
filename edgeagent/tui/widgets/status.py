"""`StatusBar`: model and quantization, tok/s of the last answer, wiki index, votes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass
class StatusInfo:
    model: str = "loading model…"
    quant: str = ""
    toy: bool = False  # the built-in toy default model: point to a capable one
    tok_s: float | None = None
    wiki: str | None = None
    passages: int | None = None
    votes: int = 1
    state: str = ""  # "thinking…", "stopped", …


def human(n: int) -> str:
    """12345 -> '12.3k' (the status bar must fit 80 columns)."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


class StatusBar(Static):
    def __init__(self) -> None:
        super().__init__("", id="status")
        self.info = StatusInfo()

    def set(self, **changes: object) -> None:
        for key, value in changes.items():
            setattr(self.info, key, value)
        self.update(self.render_info())

    def render_info(self) -> Text:
        i = self.info
        parts = [i.state] if i.state else []
        parts.append(f"{i.model} {i.quant}".strip()
                     + (" (toy model: edgeagent models pull)" if i.toy else ""))
        if i.tok_s is not None:
            parts.append(f"{i.tok_s:.0f} tok/s")
        if i.wiki:
            count = f" ({human(i.passages)} passages)" if i.passages is not None else ""
            parts.append(f"wiki {i.wiki}{count}")
        else:
            parts.append("no wiki")
        parts.append(f"votes {i.votes}")
        return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")
