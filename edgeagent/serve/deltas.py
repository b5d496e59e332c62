"""Agent events as the text a chat front-end shows: reasoning deltas and the answer.

`StepWriter(votes)(event)` returns a list of `(kind, text)` pieces, kind
`"reasoning"` (each step's Thought, Code, vote and Observation) or `"content"`
(the final answer). Streamed and non-streamed responses both use it, so the
non-streamed `reasoning_content` is exactly the streamed pieces joined.

With one vote the step's own tokens stream live; with several, the chosen
candidate's Thought and Code are written after the vote (the candidates decode
side by side, so their tokens interleave). The fallback call's tokens are not
streamed: its text arrives as the answer. Not covered: HTTP framing (`shapes`).
"""

from __future__ import annotations

from edgeagent.agent import events as ev

Piece = tuple[str, str]


def _clip(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more)"


class StepWriter:
    def __init__(self, votes: int) -> None:
        self.votes = votes
        self._fallback = False

    def __call__(self, event: ev.Event) -> list[Piece]:
        if isinstance(event, ev.StepStart):
            self._fallback = event.fallback
            if event.fallback:
                return [("reasoning", "\n\n**Answer from memory**\n")]
            head = "" if event.step == 1 else "\n\n"
            return [("reasoning", f"{head}**Step {event.step}**\n")]
        if isinstance(event, ev.Token):
            if self.votes == 1 and event.candidate == 0 and not self._fallback:
                return [("reasoning", event.text)]
            return []
        if isinstance(event, ev.Vote):
            return [("reasoning", f"Vote: candidate {event.chosen} of {event.total} "
                                  f"({event.agree} agree)\n")]
        if isinstance(event, ev.Observation):
            out: list[Piece] = []
            if self.votes > 1:
                code = f"Code:\n```py\n{event.code}\n```\n" if event.code else ""
                out.append(("reasoning", f"Thought: {event.thought}\n{code}"))
            out.append(("reasoning", f"\n{_clip(event.text.rstrip())}\n"))
            return out
        if isinstance(event, ev.FinalAnswer):
            return [("content", event.answer)]
        if isinstance(event, ev.AgentError):
            return [("reasoning", f"\nError: {event.message}\n")]
        return []
