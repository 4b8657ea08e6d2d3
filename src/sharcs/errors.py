"""The one exception type users see: a bad input, config or file, explained in one line."""


class SharcsError(ValueError):
    """A problem with the user's input (config, data, files or checkpoints), not a bug in sharcs."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
