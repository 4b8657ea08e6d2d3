"""The one exception type users see: a bad input, config or file, explained in one line."""


class SharcsError(ValueError):
    """A problem with the user's input (config, data, files or checkpoints), not a bug in sharcs."""
