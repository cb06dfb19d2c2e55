"""Grade a class: find each student's notebooks in a folder, score them all, write the table and CSV.

A notebook that is missing, is not valid JSON, crashes its kernel or runs out of time scores 0 for
what did not pass and never stops the other notebooks.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

from .config import PROJECT_DIR
from .scoring import DEFAULT_TIMEOUT, Result, grade_notebook

RELEASE_DIR = PROJECT_DIR / "exercises"
COLUMNS = ("student", "exercise", "task", "points", "max_points", "message")


class GradeError(ValueError):
    """The folder to grade, or the released exercises, cannot be used; the message says why."""


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
