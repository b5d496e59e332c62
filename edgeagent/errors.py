"""The one exception type that means "the user gave us something we cannot use".

The CLI turns a `UserError` into a one-line message on stderr and a non-zero
exit; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or a missing resource, explained in one line."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
