"""Exercises are generated from solutions; solutions pass their checks; unsolved, every check fails."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
make_exercises = load_script("tools/make_exercises.py")

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def test_solution_blocks_become_stubs_at_their_indentation():
    source = ("def f(x):\n    ### BEGIN SOLUTION\n    y = x * 2\n    return y\n    ### END SOLUTION\n\n"
              "print(f)\n")
    assert make_exercises.strip_solution(source) == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)\n")


def test_unbalanced_markers_are_reported():
    with pytest.raises(make_exercises.MarkerError, match="1 BEGIN but 0 END"):
        make_exercises.strip_solution("### BEGIN SOLUTION\nx = 1\n", "ex99 cell 3")


def test_exercises_folder_is_exactly_what_the_generator_makes():
    wanted = make_exercises.generate()
    have = {p.name: p.read_text() for p in (ROOT / "exercises").glob("*.ipynb")}
    assert set(have) == set(wanted), "run `make exercises`"
    for name, text in wanted.items():
        assert have[name] == text, f"exercises/{name} is out of sync with solutions/: run `make exercises`"
    assert make_exercises.main(["--check"]) == 0


def test_at_least_six_topics_with_two_to_four_checked_tasks_each():
    assert len(SOLUTIONS) >= 6
    for path in SOLUTIONS:
        nb = nbformat.read(path, as_version=4)
        solutions = [c for c in nb.cells if "### BEGIN SOLUTION" in c.source]
        checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
        assert 2 <= len(solutions) <= 4 and len(checks) == len(solutions), path.name
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code"), f"{path.name}: strip outputs"


def test_the_exercises_readme_counts_each_exercises_tasks():
    rows = {line.split("|")[1].strip(" `"): int(line.split("|")[3])
            for line in (ROOT / "exercises" / "README.md").read_text().splitlines() if line.startswith("| `ex")}
    assert rows.keys() == {p.stem for p in SOLUTIONS}
    for path in SOLUTIONS:
        tasks = sum("### BEGIN SOLUTION" in c.source for c in nbformat.read(path, as_version=4).cells)
        assert rows[path.stem] == tasks, f"exercises/README.md says {path.stem} has {rows[path.stem]} tasks; it has {tasks}"


def run(path: Path, tmp_path: Path, allow_errors: bool):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    return nb


@pytest.fixture
def course_env(tmp_path, real_root, weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", str(real_root))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))


def errors(cell) -> list[str]:
    return [o.ename for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_runs_clean_and_passes_every_check(path, course_env, tmp_path):
    nb = run(path, tmp_path, allow_errors=False)
    for cell in nb.cells:
        if "check" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert "passed" in text, f"{path.name}: a check printed no success:\n{cell.source}"


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_check_fails_while_the_exercise_is_unsolved(path, course_env, tmp_path):
    nb = run(path, tmp_path, allow_errors=True)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "check" in cell.metadata.get("tags", []):
            assert errors(cell), f"{path.name}: this check passes without a solution:\n{cell.source}"
        else:
            assert not errors(cell), f"{path.name}: a non-check cell fails unsolved: {errors(cell)}\n{cell.source}"
