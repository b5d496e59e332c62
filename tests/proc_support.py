"""Child processes that a test stops with Ctrl+C (SIGINT).

A shell starts background jobs with SIGINT ignored, and a child inherits that, so a
test run launched with `&` (or under `nohup`) would see its SIGINT tests fail for
a reason that has nothing to do with the product. `restore_sigint` as `preexec_fn`
gives the child the default disposition, as a terminal would.
"""

from __future__ import annotations

import signal


def restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
