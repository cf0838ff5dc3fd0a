"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class MovieGenError(Exception):
    """A user-facing error: bad input, missing or corrupt file, invalid configuration."""
