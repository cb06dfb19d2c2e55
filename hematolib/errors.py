"""The kit's errors about datasets: each message says what was found and what to do."""

from __future__ import annotations


class DatasetLayoutError(ValueError):
    """The folder is not laid out as the kit expects; the message says what was found."""


class DataNotFoundError(FileNotFoundError):
    """No dataset where one was expected; the message says how to get one."""
