"""What the exercises' check cells use: `hidden` hides the kit's own answer while a check runs.

The grader itself: `scoring` (one notebook in a fresh kernel), `gradebook` (a folder of students).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class HiddenFunctionError(AssertionError):
    """A check hides the kit's own answer to a task, and the student's code called it."""


def _kit_function(dotted: str):
    import importlib

    module_name, _, attr = dotted.rpartition(".")
    module = importlib.import_module(f"hematolib.{module_name}")
    return module, attr, getattr(module, attr)


def _referenced_globals(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _referenced_globals(const)
    return names


def _uses(function, target, seen: set | None = None) -> bool:
    """Whether `function`, or a function of the notebook it calls, holds `target` in a global or
    closure variable."""
    import inspect

    seen = set() if seen is None else seen
    code = getattr(function, "__code__", None)
    if code is None or id(function) in seen:
        return False
    seen.add(id(function))
    values = [function.__globals__.get(n) for n in _referenced_globals(code)]
    for cell in function.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty closure cell
            pass
    return any(v is target or (inspect.isfunction(v) and v.__module__ == function.__module__
                               and _uses(v, target, seen)) for v in values)


@contextmanager
def hidden(*names: str, solution=None) -> Iterator[None]:
    """Hide kit functions (e.g. "data.count_by_class") while a check runs the student's `solution`.

    Calling a hidden function raises HiddenFunctionError; a `solution` that captured one before
    (`from hematolib.data import count_by_class`) fails at once. Everything is restored afterwards.
    """
    patched = []
    try:
        for dotted in names:
            _module, attr, original = _kit_function(dotted)
            if solution is not None and _uses(solution, original):
                raise HiddenFunctionError(f"{solution.__name__} uses hl.{dotted}, the kit's own answer to this task: "
                                          "write it yourself.")

            def refuse(*args, _name=dotted, **kwargs):
                raise HiddenFunctionError(f"this check hides hl.{_name} while it runs: the task asks you to "
                                          "write it yourself, not to call the kit's answer.")

            for module in [m for n, m in list(sys.modules.items()) if n.startswith("hematolib") and m]:
                for key, value in list(vars(module).items()):
                    if value is original:
                        patched.append((module, key, value))
                        setattr(module, key, refuse)
        yield
    finally:
        for module, key, value in reversed(patched):
            setattr(module, key, value)
