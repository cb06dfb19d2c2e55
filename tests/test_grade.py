"""Grading: nbgrader generate_assignment and autograde accept the kit's notebooks, and the kit's own
`grade` command scores a folder of students, whatever their notebooks do.

Tests that run notebooks are marked slow. Small notebooks made here test the grader's robustness (a hang, a crash, broken JSON, a missing or
edited notebook); the real ex01 shows a solved, an unsolved and a wrong submission end to end.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hematolib import grade, gradebook, scoring
from tests.wrong_solutions import wrong_solutions

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)  # nbgrader and alembic live next to the interpreter


def nbgrader_env(**extra) -> dict:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), **extra}


def cell(kind: str, source: str, **meta):
    c = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    c.metadata["nbgrader"] = {"schema_version": 3, **meta}
    if meta.get("grade") and not meta.get("solution"):
        c.metadata["tags"] = ["check"]
    return c


def locked(kind, source, gid):
    return cell(kind, source, grade=False, solution=False, locked=True, grade_id=gid)


def tiny_source(name: str) -> nbformat.NotebookNode:
    """A two-task exercise in the kit's layout: setup, answer, check (2 and 3 points), written answer."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.cells = [
        locked("markdown", f"# {name}", "intro"),
        locked("code", "import os\nimport time", "setup"),
        cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             grade=False, solution=True, locked=False, task=False, grade_id="task1_solution"),
        cell("code", 'assert double(3) == 6, f"double(3) should be 6, got {double(3)}"\nprint("Task 1 passed")',
             grade=True, solution=False, locked=True, points=2, grade_id="task1"),
        cell("code", "def halve(x):\n    ### BEGIN SOLUTION\n    return x / 2\n    ### END SOLUTION",
             grade=False, solution=True, locked=False, task=False, grade_id="task2_solution"),
        cell("code", 'assert halve(5) == 2.5, f"halve(5) should be 2.5, got {halve(5)}"\nprint("Task 2 passed")',
             grade=True, solution=False, locked=True, points=3, grade_id="task2"),
        cell("markdown", "Because halving is the inverse of doubling.", grade=True, solution=True, locked=False,
             task=False, points=2, grade_id="written"),
    ]
    return nb


TINY = ("ex91_double", "ex92_halve")


@pytest.fixture(scope="module")
def tiny_course(tmp_path_factory) -> Path:
    """A course whose release was made by `nbgrader generate_assignment` from tiny source notebooks."""
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\nc.ExecutePreprocessor.timeout = 60\n")
    for name in TINY:
        (course / "source" / name).mkdir(parents=True)
        nbformat.write(tiny_source(name), course / "source" / name / f"{name}.ipynb")
        done = subprocess.run([f"{BIN}/nbgrader", "generate_assignment", name, "--force"], cwd=course,
                              env=nbgrader_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    release = course / "all-released"
    release.mkdir()
    for name in TINY:
        (release / f"{name}.ipynb").write_bytes((course / "release" / name / f"{name}.ipynb").read_bytes())
    return course


def answered(release_path: Path, answers: dict[str, str]) -> str:
    """The released notebook's text with some cells' sources replaced, by grade id."""
    nb = nbformat.read(release_path, as_version=4)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            c.source = answers[gid]
    return nbformat.writes(nb)


SOLVED = {"task1_solution": "def double(x):\n    return x + x",
          "task2_solution": "def halve(x):\n    return x * 0.5",
          "written": "Halving undoes doubling."}


@pytest.mark.slow
def test_the_release_nbgrader_makes_has_stubs_and_the_kit_reads_its_tasks(tiny_course):
    nb = nbformat.read(tiny_course / "all-released" / "ex91_double.ipynb", as_version=4)
    assert "raise NotImplementedError()" in nb.cells[2].source and "return 2 * x" not in nb.cells[2].source
    assert nb.cells[6].source == scoring.ANSWER_STUB
    assert scoring.tasks_of(nb) == [scoring.Task("task1", "1", 2.0, False), scoring.Task("task2", "2", 3.0, False),
                                    scoring.Task("written", "written", 2.0, True)]


@pytest.fixture(scope="module")
def tiny_grades(tiny_course, tmp_path_factory):
    """The kit's grader over a class whose notebooks do everything a notebook can do wrong."""
    release = tiny_course / "all-released"
    a, b = release / "ex91_double.ipynb", release / "ex92_halve.ipynb"
    folder = tmp_path_factory.mktemp("submissions")
    wrong = {"task1_solution": "def double(x):\n    return 2 * x + 1",  # off by one
             "task2_solution": "def halve(x):\n    return x // 2"}  # integer division
    edited = json.loads(answered(a, {"task1_solution": "def double(x):\n    return 0"}))
    edited["cells"][3]["source"] = "print('Task 1 passed')"  # the assertion deleted
    files = {
        "alice/ex91_double.ipynb": answered(a, SOLVED), "alice/ex92_halve.ipynb": answered(b, SOLVED),
        "bob/ex91_double.ipynb": a.read_text(), "bob/ex92_halve.ipynb": b.read_text(),
        "carol/ex91_double.ipynb": answered(a, wrong), "carol/ex92_halve.ipynb": answered(b, SOLVED),
        "dave/ex91_double.ipynb": answered(a, SOLVED)[:200],  # cut short: not valid JSON
        "dave/ex92_halve.ipynb": answered(b, SOLVED),
        "erin/nested/ex91_double.ipynb": answered(a, {**SOLVED, "task2_solution": "while True:\n    time.sleep(0.1)"}),
        "frank_ex91_double.ipynb": answered(a, {"task1_solution": "os._exit(1)"}),  # kills the kernel
        "frank_ex92_halve.ipynb": answered(b, SOLVED),
        "grace/ex91_double.ipynb": json.dumps(edited),
        "notes.ipynb": "{}",  # names no exercise
    }
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    results, notes = gradebook.grade_folder(folder, release, timeout=8)
    return {(r.student, r.exercise, r.task): r for r in results}, notes, results


@pytest.mark.slow
def test_a_solved_notebook_gets_every_automatic_point_and_its_written_answer_waits_for_a_person(tiny_grades):
    by, _, _ = tiny_grades
    assert [by["alice", e, t].points for e in TINY for t in ("1", "2")] == [2, 3, 2, 3]
    assert by["alice", "ex91_double", "written"].points is None
    assert by["alice", "ex91_double", "written"].message == scoring.MANUAL_NOTE


@pytest.mark.slow
def test_an_unsolved_notebook_scores_zero_and_says_it_was_not_answered(tiny_grades):
    by, _, _ = tiny_grades
    for e in TINY:
        for t in ("1", "2", "written"):
            assert by["bob", e, t].points == 0
    assert by["bob", "ex91_double", "1"].message == "not answered (NotImplementedError)"
    assert by["bob", "ex91_double", "written"].message == "not answered"


@pytest.mark.slow
def test_wrong_answers_score_zero_with_the_checks_message_and_the_right_ones_still_count(tiny_grades):
    by, _, _ = tiny_grades
    assert by["carol", "ex91_double", "1"].points == 0
    assert by["carol", "ex91_double", "1"].message == "double(3) should be 6, got 7"
    assert by["carol", "ex91_double", "2"].points == 0 and "got 2" in by["carol", "ex91_double", "2"].message
    assert by["carol", "ex92_halve", "1"].points == 2


@pytest.mark.slow
def test_a_notebook_that_is_not_json_scores_zero_and_the_students_other_notebook_is_graded(tiny_grades):
    by, _, _ = tiny_grades
    assert by["dave", "ex91_double", "1"].points == 0
    assert by["dave", "ex91_double", "1"].message.startswith("not a valid notebook")
    assert by["dave", "ex92_halve", "2"].points == 3


@pytest.mark.slow
def test_a_hanging_cell_is_stopped_at_the_time_limit_and_what_passed_before_it_counts(tiny_grades):
    by, _, _ = tiny_grades
    assert by["erin", "ex91_double", "1"].points == 2
    assert by["erin", "ex91_double", "2"].points == 0
    assert "8 s" in by["erin", "ex91_double", "2"].message


@pytest.mark.slow
def test_a_kernel_that_dies_scores_zero_for_the_rest_and_the_other_notebooks_go_on(tiny_grades):
    by, _, _ = tiny_grades
    assert by["frank", "ex91_double", "1"].points == 0 and "kernel died" in by["frank", "ex91_double", "1"].message
    assert by["frank", "ex92_halve", "1"].points == 2  # flat layout: frank_ex92_halve.ipynb


@pytest.mark.slow
def test_a_deleted_assertion_is_put_back_before_the_notebook_runs(tiny_grades):
    by, _, _ = tiny_grades
    assert by["grace", "ex91_double", "1"].points == 0
    assert "double(3) should be 6, got 0" in by["grace", "ex91_double", "1"].message


@pytest.mark.slow
def test_a_missing_notebook_scores_zero_and_unknown_files_are_noted(tiny_grades):
    by, notes, _ = tiny_grades
    assert by["erin", "ex92_halve", "1"].points == 0 and by["erin", "ex92_halve", "1"].message.startswith("missing")
    assert any("notes.ipynb" in n and "matches no released exercise" in n for n in notes)


@pytest.mark.slow
def test_the_table_and_the_csv_list_every_task_of_every_student(tiny_grades, tmp_path):
    _, _, results = tiny_grades
    students = {"alice", "bob", "carol", "dave", "erin", "frank", "grace"}
    assert {r.student for r in results} == students and len(results) == len(students) * 2 * 3
    text = gradebook.table(results)
    assert "alice: 10 of 10 points graded automatically; 2 written answers (4 points) to grade by hand" in text
    assert "bob: 0 of 10 points graded automatically" in text
    assert "double(3) should be 6, got 7" in text
    path = gradebook.write_csv(results, tmp_path / "out" / "grades.csv")
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == gradebook.COLUMNS and len(rows) == len(results)
    assert {"student": "alice", "exercise": "ex91_double", "task": "1", "points": "2", "max_points": "2",
            "message": ""} in rows
    assert [p.name for p in path.parent.iterdir()] == ["grades.csv"]  # no temporary file left behind


@pytest.mark.slow
def test_nbgrader_autograde_scores_the_same_submissions_as_the_kit(tiny_course):
    release = tiny_course / "all-released" / "ex91_double.ipynb"
    wrong = {"task1_solution": "def double(x):\n    return 2 * x + 1"}
    for student, text in [("alice", answered(release, SOLVED)), ("bob", release.read_text()),
                          ("carol", answered(release, wrong)), ("dave", answered(release, SOLVED)[:200])]:
        target = tiny_course / "submitted" / student / "ex91_double"
        target.mkdir(parents=True)
        (target / "ex91_double.ipynb").write_text(text)
    done = subprocess.run([f"{BIN}/nbgrader", "autograde", "ex91_double", "--create", "--force"], cwd=tiny_course,
                          env=nbgrader_env(), capture_output=True, text=True, timeout=300)
    assert "dave" in done.stdout + done.stderr  # the broken notebook is reported ...
    scores = nbgrader_scores(tiny_course, "ex91_double")
    assert scores["alice"] == {"task1": 2, "task2": 3, "written": 0}  # written: 0 until graded by hand
    assert scores["bob"] == {"task1": 0, "task2": 0, "written": 0}
    assert scores["carol"] == {"task1": 0, "task2": 0, "written": 0}
    assert scores["dave"] == {"task1": 0, "task2": 0, "written": 0}  # ... scores 0, and the others are graded


def nbgrader_scores(course: Path, assignment: str) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook, MissingEntry

    scores = {}
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gradebook:
        for student in gradebook.students:
            try:
                submission = gradebook.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            scores[student.id] = {g.name: g.score for nb in submission.notebooks for g in nb.grades}
    return scores


# ---- helpers the checks use ------------------------------------------------------------------------

def test_hidden_makes_the_kits_answer_fail_and_puts_it_back():
    from hematolib import data

    original = data.count_by_class
    with grade.hidden("data.count_by_class"):
        with pytest.raises(grade.HiddenFunctionError, match="hides hl.data.count_by_class"):
            data.count_by_class([])
    assert data.count_by_class is original and data.count_by_class([])["MONOCYTE"] == 0


def test_hidden_catches_the_kits_answer_imported_before_the_check():
    from hematolib.data import count_by_class

    def helper(records):
        return count_by_class(records)

    def solution(records):
        return helper(records)

    with pytest.raises(grade.HiddenFunctionError, match="uses hl.data.count_by_class"):
        with grade.hidden("data.count_by_class", solution=solution):
            pass


def test_submissions_are_found_in_nbgrader_student_folders_and_flat_files(tmp_path):
    for rel in ("submitted/ann/ex91_double/ex91_double.ipynb", "submitted/ann/.ipynb_checkpoints/ex91_double.ipynb",
                "submitted/bo/ex92_halve.ipynb", "submitted/bo/copy/ex92_halve.ipynb", "submitted/cy_ex91_double.ipynb",
                "submitted/ex91_double.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    found, notes = gradebook.find_submissions(tmp_path / "submitted", TINY)
    assert {k: v.relative_to(tmp_path / "submitted").as_posix() for k, v in found.items()} == {
        ("ann", "ex91_double"): "ann/ex91_double/ex91_double.ipynb", ("bo", "ex92_halve"): "bo/copy/ex92_halve.ipynb",
        ("cy", "ex91_double"): "cy_ex91_double.ipynb"}
    assert any("bo/ex92_halve.ipynb" in n and "already has" in n for n in notes)
    assert any(n.startswith("skipped ex91_double.ipynb") and "student's name" in n for n in notes)


def test_the_grade_command_says_what_is_wrong_with_its_folder(tmp_path, capsys):
    from hematolib.cli import main

    assert main(["grade", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["grade", str(tmp_path)]) == 2
    assert "no student notebooks" in capsys.readouterr().err
    assert main(["grade", str(tmp_path), "--release", str(tmp_path)]) == 2
    assert "no released exercises" in capsys.readouterr().err
    (tmp_path / "ann_ex01_explore_data.ipynb").write_text("{}")
    assert main(["grade", str(tmp_path), "--exercises", "ex99"]) == 2
    assert "no released exercise matches ['ex99']" in capsys.readouterr().err


def test_make_grade_without_a_folder_says_how_to_call_it():
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "grade"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage: make grade SUBMISSIONS=folder" in done.stdout + done.stderr


# ---- the real ex01, end to end ------------------------------------------------------------------------

EX01 = "ex01_explore_data"


def solved_ex01(wrong_index: int | None = None) -> str:
    """exercises/ex01 answered from solutions/ex01, or with each task's wrong solution number `wrong_index`."""
    solution = nbformat.read(ROOT / "solutions" / f"{EX01}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata["nbgrader"].get("solution")}
    if wrong_index is not None:
        answers.update({f"{task}_solution": wrongs[wrong_index].source
                        for task, wrongs in wrong_solutions(EX01).items()})
    return answered(ROOT / "exercises" / f"{EX01}.ipynb", answers)


@pytest.mark.slow
@pytest.mark.real_data
def test_make_grade_on_three_students_prints_the_table_and_writes_the_csv(tmp_path, real_root):
    folder, out = tmp_path / "class", tmp_path / "grades.csv"
    for student, text in [("alice", solved_ex01()), ("bob", (ROOT / "exercises" / f"{EX01}.ipynb").read_text()),
                          ("carol", solved_ex01(wrong_index=0))]:
        (folder / student).mkdir(parents=True)
        (folder / student / f"{EX01}.ipynb").write_text(text)
    (folder / "carol" / "ex02_augmentation.ipynb").write_text('{"cells": [')  # broken
    done = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed-stamp", "grade",
                           f"SUBMISSIONS={folder}", f"ARGS=--out {out} --timeout 120"], cwd=ROOT,
                          env={**os.environ, "HEMATO_DATA": str(real_root)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alice: 4 of 8 points graded automatically; 1 written answer (2 points) to grade by hand" in done.stdout
    assert "bob: 0 of 8 points" in done.stdout and "carol: 0 of 8 points" in done.stdout
    rows = {(r["student"], r["exercise"], r["task"]): r for r in csv.DictReader(out.open())}
    assert [rows["alice", EX01, t]["points"] for t in "123"] == ["1", "1", "2"]
    assert all(rows["bob", EX01, t]["message"] == "not answered (NotImplementedError)" for t in "123")
    for n, task in enumerate(("task1", "task2", "task3"), start=1):
        wrong = wrong_solutions(EX01)[task][0]
        assert rows["carol", EX01, str(n)]["points"] == "0" and wrong.says in rows["carol", EX01, str(n)]["message"]
    assert rows["carol", "ex02_augmentation", "1"]["message"].startswith("not a valid notebook")
    assert rows["alice", "ex02_augmentation", "1"]["message"].startswith("missing")
    assert f"Grades written to {out}" in done.stdout


@pytest.mark.slow
@pytest.mark.real_data
def test_nbgrader_generates_and_autogrades_the_real_ex01(tmp_path, real_root):
    course = tmp_path / "course"
    (course / "source" / EX01).mkdir(parents=True)
    (course / "source" / EX01 / f"{EX01}.ipynb").write_bytes((ROOT / "solutions" / f"{EX01}.ipynb").read_bytes())
    (course / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n")
    env = nbgrader_env(HEMATO_DATA=str(real_root))
    done = subprocess.run([f"{BIN}/nbgrader", "generate_assignment", EX01], cwd=course, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    released = (course / "release" / EX01 / f"{EX01}.ipynb").read_text()
    assert released == (ROOT / "exercises" / f"{EX01}.ipynb").read_text()
    for student, text in [("alice", solved_ex01()), ("bob", released), ("carol", solved_ex01(wrong_index=1)),
                          ("dave", "not a notebook")]:
        (course / "submitted" / student / EX01).mkdir(parents=True)
        (course / "submitted" / student / EX01 / f"{EX01}.ipynb").write_text(text)
    done = subprocess.run([f"{BIN}/nbgrader", "autograde", EX01, "--create"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=600)
    assert "dave" in done.stdout + done.stderr
    scores = nbgrader_scores(course, EX01)
    assert scores["alice"] == {"task1": 1, "task2": 1, "task3": 2, "written": 0}
    assert scores["bob"] == {"task1": 0, "task2": 0, "task3": 0, "written": 0}
    assert scores["carol"] == {"task1": 0, "task2": 0, "task3": 0, "written": 0}
    assert scores["dave"] == {"task1": 0, "task2": 0, "task3": 0, "written": 0}
