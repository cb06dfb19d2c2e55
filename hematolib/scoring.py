"""Score one exercise notebook: put its locked cells back as released, run it in a fresh kernel
within a time budget, and give each check cell its points or the reason it failed."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 300  # seconds per notebook; the exercises take well under a minute each
MANUAL_NOTE = "graded by hand: see the rubric in exercises/README.md"
ANSWER_STUB = "YOUR ANSWER HERE"  # what nbgrader leaves in an unanswered written question


@dataclass(frozen=True)
class Task:
    """One graded cell of a released exercise."""

    grade_id: str
    name: str  # "1", "2", ... for task checks, the grade id otherwise
    points: float
    manual: bool  # a written answer, graded by hand


@dataclass
class Result:
    """The score of one task of one student's notebook. points is None for a task graded by hand."""

    student: str
    exercise: str
    task: str
    points: float | None
    max_points: float
    message: str = ""
    manual: bool = False  # a written answer: its points are given by hand


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def tasks_of(nb) -> list[Task]:
    """The graded cells of a notebook, in order: nbgrader test cells and written answers."""
    tasks = []
    for cell in nb.cells:
        meta = _nbgrader(cell)
        if meta.get("grade") and "grade_id" in meta:
            gid = meta["grade_id"]
            match = re.fullmatch(r"task(\d+)", gid)
            tasks.append(Task(gid, match.group(1) if match else gid, float(meta.get("points", 0)),
                              manual=bool(meta.get("solution"))))
    return tasks


def restore_locked(submission, release) -> tuple[object, set[str]]:
    """The submission with its read-only and check cells put back as released, and the grade ids
    of released cells it no longer has."""
    released = {_nbgrader(c)["grade_id"]: c for c in release.cells if "grade_id" in _nbgrader(c)}
    present = set()
    for cell in submission.cells:
        gid = _nbgrader(cell).get("grade_id")
        if gid not in released:
            continue
        present.add(gid)
        original = released[gid]
        meta = _nbgrader(original)
        if meta.get("locked") or (meta.get("grade") and not meta.get("solution")):
            cell.cell_type = original.cell_type
            cell.source = original.source
            cell.metadata["nbgrader"] = dict(meta)
            if cell.cell_type == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
    return submission, set(released) - present


def _error_of(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            value = str(out.get("evalue", "")).strip().splitlines()
            text = f"{out.get('ename', 'Error')}: {value[0] if value else ''}".strip().rstrip(":")
            if out.get("ename") in ("AssertionError", "HiddenFunctionError") and value:
                text = value[0]  # a check's own message says what is wrong
            elif out.get("ename") == "NotImplementedError":
                text = "not answered (NotImplementedError)"
            return text[:300]
    return None


def run_notebook(nb, cwd: str | Path, timeout: float = DEFAULT_TIMEOUT,
                 kernel_name: str = "python3") -> dict[int, str]:
    """Run `nb` in place, cell by cell, within `timeout` seconds in all; errors do not stop it.

    Returns {cell index: why it did not run} for the cells a time-out or a dead kernel left out.
    The clock starts once the kernel is up.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, timeout=max(1, int(timeout)), kernel_name=kernel_name, allow_errors=True,
                            interrupt_on_timeout=False, resources={"metadata": {"path": str(cwd)}})
    not_run: dict[int, str] = {}
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    reason = None
    try:
        with client.setup_kernel():
            deadline = time.monotonic() + timeout  # the kernel's start does not count
            for index in code:
                if reason is None and time.monotonic() >= deadline:
                    reason = f"not run: the notebook used up its {timeout:g} s"
                if reason is not None:
                    not_run[index] = reason
                    continue
                client.timeout = max(1, int(deadline - time.monotonic()))
                try:
                    client.execute_cell(nb.cells[index], index)
                except CellTimeoutError:
                    not_run[index] = f"timed out: the notebook used up its {timeout:g} s in this cell"
                    reason = f"not run: an earlier cell used up the notebook's {timeout:g} s"
                except DeadKernelError:
                    not_run[index] = "the kernel died running this cell (a crash, or out of memory)"
                    reason = "not run: the kernel died in an earlier cell"
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot start scores 0, the others go on
        for index in code:
            not_run.setdefault(index, f"not run: {type(exc).__name__}: {exc}"[:300])
    return not_run


def grade_notebook(path: Path | None, release, student: str, exercise: str,
                   timeout: float = DEFAULT_TIMEOUT, cwd: str | Path | None = None) -> list[Result]:
    """The results of every graded task of one student's notebook (None: not submitted)."""
    import nbformat

    tasks = tasks_of(release)

    def all_zero(message: str) -> list[Result]:
        return [Result(student, exercise, t.name, 0.0, t.points, message, t.manual) for t in tasks]

    if path is None:
        return all_zero(f"missing: no {exercise} notebook from this student")
    try:
        nb = nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - any unreadable file scores 0
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return all_zero(f"not a valid notebook ({first[:200]}): open it in Jupyter and save it again")
    nb, missing = restore_locked(nb, release)
    not_run = run_notebook(nb, cwd or Path(path).parent, timeout)
    cells = {_nbgrader(c).get("grade_id"): (i, c) for i, c in enumerate(nb.cells) if _nbgrader(c).get("grade_id")}
    results = []
    for task in tasks:
        if task.grade_id in missing:
            results.append(Result(student, exercise, task.name, 0.0, task.points,
                                  f"the cell {task.grade_id} is missing from the notebook: start again from the "
                                  "released exercise", task.manual))
            continue
        index, cell = cells[task.grade_id]
        if task.manual:
            answered = ANSWER_STUB not in cell.source and cell.source.strip()
            results.append(Result(student, exercise, task.name, None if answered else 0.0, task.points,
                                  MANUAL_NOTE if answered else "not answered", manual=True))
        elif index in not_run:
            results.append(Result(student, exercise, task.name, 0.0, task.points, not_run[index]))
        else:
            error = _error_of(cell)
            results.append(Result(student, exercise, task.name, 0.0 if error else task.points, task.points,
                                  error or ""))
    return results
