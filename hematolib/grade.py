"""Grade exercise notebooks: run each student's notebook against the released checks, score the
nbgrader test cells, and write a CSV and a table. Also the helpers the CHECK cells use.

A submission is read, its read-only cells (setup and checks, `locked` in nbgrader's metadata) are
put back as released, then it runs top to bottom in a fresh kernel within a time budget. A check
cell that ends without an error earns its points; one that fails earns 0 and its message is kept.
A notebook that is missing, is not valid JSON, crashes its kernel or runs out of time scores 0 for
what did not pass and never stops the other notebooks.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .config import PROJECT_DIR

RELEASE_DIR = PROJECT_DIR / "exercises"
DEFAULT_TIMEOUT = 300  # seconds per notebook; the exercises take well under a minute each
MANUAL_NOTE = "graded by hand: see the rubric in exercises/README.md"
ANSWER_STUB = "YOUR ANSWER HERE"  # what nbgrader leaves in an unanswered written question
COLUMNS = ("student", "exercise", "task", "points", "max_points", "message")


class GradeError(ValueError):
    """The folder to grade, or the released exercises, cannot be used; the message says why."""


class HiddenFunctionError(AssertionError):
    """A check hides the kit's own answer to a task, and the student's code called it."""


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


# ---- helpers for CHECK cells ------------------------------------------------------------------

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


# ---- reading the release and the submissions --------------------------------------------------

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


def load_release(release_dir: str | Path = RELEASE_DIR) -> dict[str, object]:
    """{exercise name: released notebook} for every notebook in `release_dir`."""
    import nbformat

    release_dir = Path(release_dir)
    notebooks = {p.stem: nbformat.read(p, as_version=4) for p in sorted(release_dir.glob("*.ipynb"))}
    if not notebooks:
        raise GradeError(f"no released exercises (*.ipynb) in {release_dir}: pass --release, the folder "
                         "`nbgrader generate_assignment` wrote (or the kit's exercises/).")
    return notebooks


def find_submissions(folder: str | Path, exercises: Iterable[str]) -> tuple[dict[tuple[str, str], Path], list[str]]:
    """({(student, exercise): notebook}, notes) for a folder laid out one subfolder per student
    (nbgrader's submitted/STUDENT/ASSIGNMENT/NOTEBOOK.ipynb, or STUDENT/NOTEBOOK.ipynb) or flat
    (STUDENT_ex03_build_model.ipynb). Notes name files that were skipped and why."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradeError(f"{folder} is not a folder: pass the folder of submissions "
                         "(one subfolder per student, or files named STUDENT_exNN_name.ipynb).")
    exercises = sorted(exercises, key=len, reverse=True)
    found: dict[tuple[str, str], Path] = {}
    notes = []
    for path in sorted(folder.rglob("*.ipynb")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):  # .ipynb_checkpoints and the like
            continue
        exercise = next((e for e in exercises if path.stem == e or path.stem.endswith("_" + e)), None)
        if exercise is None:
            notes.append(f"skipped {rel}: its name matches no released exercise")
            continue
        if len(rel.parts) > 1:
            student = rel.parts[0]
        elif path.stem != exercise:
            student = path.stem[: -len(exercise) - 1]
        else:
            notes.append(f"skipped {rel}: a file at the top of the folder needs the student's name in front "
                         f"({{name}}_{exercise}.ipynb)")
            continue
        if (student, exercise) in found:
            notes.append(f"skipped {rel}: {student} already has {found[(student, exercise)].relative_to(folder)} "
                         f"for {exercise}")
            continue
        found[(student, exercise)] = path
    return found, notes


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


# ---- running ----------------------------------------------------------------------------------

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


def grade_folder(folder: str | Path, release_dir: str | Path = RELEASE_DIR, timeout: float = DEFAULT_TIMEOUT,
                 exercises: Iterable[str] | None = None, progress=None) -> tuple[list[Result], list[str]]:
    """(results, notes) for every student in `folder` and every exercise one of them submitted
    (or `exercises`, names or prefixes such as "ex03"); a missing notebook scores 0."""
    release = load_release(release_dir)
    found, notes = find_submissions(folder, release)
    if exercises:
        wanted = sorted(e for e in release if any(e == x or e.startswith(x) for x in exercises))
        if not wanted:
            raise GradeError(f"no released exercise matches {list(exercises)}; there are {sorted(release)}")
    else:
        wanted = sorted({e for _, e in found})
    students = sorted({s for s, _ in found})
    if not students:
        raise GradeError(f"no student notebooks in {folder}: expected STUDENT/…/exNN_name.ipynb or "
                         f"STUDENT_exNN_name.ipynb, with exercises named as in {Path(release_dir)}")
    results = []
    for student in students:
        for exercise in wanted:
            path = found.get((student, exercise))
            if progress:
                progress(f"grading {student} {exercise}" + ("" if path else " (missing)"))
            results += grade_notebook(path, release[exercise], student, exercise, timeout,
                                      cwd=Path(release_dir))
    return results, notes


# ---- reporting --------------------------------------------------------------------------------

def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def write_csv(results: Iterable[Result], path: str | Path) -> Path:
    """Write one row per task (COLUMNS) to `path`, atomically; points is empty for hand-graded tasks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for r in results:
                row = asdict(r)
                row["points"], row["max_points"] = _number(r.points), _number(r.max_points)
                writer.writerow([row[c] for c in COLUMNS])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def table(results: list[Result], width: int = 70) -> str:
    """The results as a text table, then each student's total of the automatically graded points."""
    rows = [("student", "exercise", "task", "points", "message")]
    for r in results:
        message = r.message if len(r.message) <= width else r.message[: width - 1] + "…"
        rows.append((r.student, r.exercise, r.task, f"{_number(r.points) or '-'}/{_number(r.max_points)}", message))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
    lines.append("")
    for student in sorted({r.student for r in results}):
        mine = [r for r in results if r.student == student]
        auto = [r for r in mine if not r.manual]
        by_hand = [r for r in mine if r.manual and r.points is None]
        lines.append(f"{student}: {sum(r.points for r in auto):g} of {sum(r.max_points for r in auto):g} "
                     "points graded automatically"
                     + (f"; {len(by_hand)} written answer{'s' * (len(by_hand) != 1)} "
                        f"({sum(r.max_points for r in by_hand):g} points) to grade by hand" if by_hand else ""))
    return "\n".join(lines).rstrip() + "\n"
