"""Exceptions that the command line turns into one clear line (plus the way out)."""

from __future__ import annotations


class HrlSarpError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to a user."""


class ConfigError(HrlSarpError):
    """A config file, key, value or override is wrong."""


class DataError(HrlSarpError):
    """A market folder or file cannot be read or is unusable."""


class ValidationError(DataError):
    """A market failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = self.problems[0] if self.problems else "market is invalid"
        more = f" (+{len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
        super().__init__(head + more)


class CheckpointError(HrlSarpError):
    """A run folder or checkpoint is missing, damaged or incompatible."""
