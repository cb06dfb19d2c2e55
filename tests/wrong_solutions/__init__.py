"""Plausible wrong answers to every exercise task, kept to prove that each CHECK cell rejects them.

One module per exercise (named like its notebook) holds WRONG: {grade id of the task's check:
[Wrong(...), ...]}. Each wrong answer replaces the task's solution cell; its check must then fail
with an AssertionError whose message contains `says` (what the student is told).
"""

from __future__ import annotations

import importlib
from typing import NamedTuple


class Wrong(NamedTuple):
    """A wrong solution cell: what mistake it makes, its source, and what its check's message must say."""

    mistake: str
    source: str
    says: str


def wrong_solutions(exercise: str) -> dict[str, list[Wrong]]:
    """{task grade id: wrong solutions} for an exercise such as "ex01_explore_data"."""
    return importlib.import_module(f"{__name__}.{exercise}").WRONG
