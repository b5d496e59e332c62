"""Drive the INSTALLED terminal app headless: ask one question, wait for the answer.

Run with the installed app's own Python, from outside the source tree
(packaging/smoke.sh does): it refuses to run against a source checkout. Exits 0 when the
app started, took the question and showed its steps and an answer; 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

QUESTION = "What is 17 * 23?"
TIMEOUT_S = 900.0  # generous: a loaded 2-core CI machine


async def main() -> int:
    from textual.widgets import Input, Markdown

    import edgeagent
    from edgeagent.tui.app import create_app
    from edgeagent.tui.widgets.step import StepBlock

    where = Path(edgeagent.__file__).resolve()
    print(f"edgeagent imported from {where}")
    if "site-packages" not in where.parts:
        print("not an installed copy (no site-packages in its path)", file=sys.stderr)
        return 1
    app = create_app()
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = time.monotonic() + TIMEOUT_S
        while app.runner is None:
            if app.runner_error or time.monotonic() > deadline:
                print(f"the model did not load: {app.runner_error}", file=sys.stderr)
                return 1
            await pilot.pause(0.1)
        app.query_one("#prompt", Input).value = QUESTION
        await pilot.press("enter")
        await pilot.pause(0.5)
        while app._run is not None:
            if time.monotonic() > deadline:
                print("no answer within the time limit", file=sys.stderr)
                return 1
            await pilot.pause(0.2)
        await pilot.pause()
        steps = len(app.query(StepBlock))
        finals = list(app.query(".final").results(Markdown))
        if not finals:
            print(f"no answer shown ({steps} steps)", file=sys.stderr)
            return 1
        print(f"question: {QUESTION}\nsteps shown: {steps}\nanswer: {finals[-1].source!r}")
        return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
