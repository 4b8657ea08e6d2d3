"""The one exception type users see: a bad input, config or file, explained in one line."""

from __future__ import annotations

import re
from collections.abc import Callable


class SharcsError(ValueError):
    """A problem with the user's input (config, data, files or checkpoints), not a bug in sharcs.

    `option`: the config field or option the problem is about (e.g. "widths"). The message then reads
    "widths: ..." in the library and `command_line()` reads "--widths: ..." on the command line, where
    every field of a config is spelled as an option. Other fields such a message names are written
    `{field_name}`: "distill_narrow" in the library, "--distill-narrow" on the command line.
    """

    def __init__(self, message: str, option: str | None = None):
        self.option = option
        self.detail = message
        super().__init__(self._spelled(lambda name: name))

    def command_line(self) -> str:
        """The message with its fields spelled as the command-line options that set them."""
        return self._spelled(option_name)

    def _spelled(self, spell: Callable[[str], str]) -> str:
        if self.option is None:
            return self.detail
        detail = re.sub(r"\{([a-z_]+)\}", lambda m: spell(m.group(1)), self.detail)
        return f"{spell(self.option)}: {detail}"


def option_name(field_name: str) -> str:
    """The command-line spelling of a config or options field: held_out_fraction -> --held-out-fraction."""
    return "--" + field_name.replace("_", "-")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
