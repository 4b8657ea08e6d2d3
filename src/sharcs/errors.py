"""The one exception type users see: a bad input, config or file, explained in one line."""

from __future__ import annotations


class SharcsError(ValueError):
    """A problem with the user's input (config, data, files or checkpoints), not a bug in sharcs.

    `option`: the config field or option the problem is about (e.g. "widths"). The message then reads
    "widths: ..." in the library and `command_line()` reads "--widths: ..." on the command line, where
    every field of a config is spelled as an option.
    """

    def __init__(self, message: str, option: str | None = None):
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option
        self.detail = message

    def command_line(self) -> str:
        """The message with its field spelled as the command-line option that sets it."""
        if self.option is None:
            return str(self)
        return f"--{self.option.replace('_', '-')}: {self.detail}"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
