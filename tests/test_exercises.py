"""Exercises are nbgrader assignments made from solutions/; every check passes the right answer and
rejects the wrong ones in tests/wrong_solutions/ and the unsolved stubs.

The checks run in-process, on the real data: each solution notebook's cells run once in a namespace
(as a kernel would run them), then each wrong answer replaces its task's solution and the check runs
again. tests/test_grade.py runs notebooks in real kernels.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import nbformat
import pytest

from tests.helpers import load_script
from tests.wrong_solutions import wrong_solutions

ROOT = Path(__file__).resolve().parent.parent
make_exercises = load_script("tools/make_exercises.py")

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = [p.stem for p in SOLUTIONS]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def read(path: Path):
    return nbformat.read(path, as_version=4)


def checks_of(nb) -> list:
    return [c for c in nb.cells if nbgrader(c).get("grade") and not nbgrader(c).get("solution")]


def test_exercises_folder_is_exactly_what_nbgrader_generate_assignment_makes():
    wanted = make_exercises.generate()
    have = {p.name: p.read_text() for p in (ROOT / "exercises").glob("*.ipynb")}
    assert set(have) == set(wanted), "run `make exercises`"
    for name, text in wanted.items():
        assert have[name] == text, f"exercises/{name} is out of sync with solutions/: run `make exercises`"
    assert make_exercises.main(["--check"]) == 0


@pytest.mark.slow
def test_nbgrader_refuses_a_solution_marker_outside_a_solution_cell(tmp_path):
    bad = tmp_path / "solutions"
    bad.mkdir()
    nb = read(SOLUTIONS[0])
    setup = next(c for c in nb.cells if c.cell_type == "code" and not nbgrader(c).get("solution"))
    setup.source += f"\n{BEGIN}\nx = 1\n{END}"
    nbformat.write(nb, bad / SOLUTIONS[0].name)
    with pytest.raises(make_exercises.GenerateError, match="[Ss]olution region"):
        make_exercises.generate(bad)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_cell_is_marked_for_nbgrader(path):
    nb = read(path)
    solutions = [c for c in nb.cells if nbgrader(c).get("solution") and c.cell_type == "code"]
    checks = checks_of(nb)
    written = [c for c in nb.cells if nbgrader(c).get("solution") and nbgrader(c).get("grade")]
    assert 2 <= len(solutions) <= 4 and len(checks) == len(solutions), path.name
    for n, (solution, check) in enumerate(zip(solutions, checks), start=1):
        assert nbgrader(solution)["grade_id"] == f"task{n}_solution" and BEGIN in solution.source
        assert nbgrader(check)["grade_id"] == f"task{n}" and nbgrader(check)["locked"]
        assert nbgrader(check)["points"] > 0 and "check" in check.metadata.get("tags", [])
        assert nb.cells.index(solution) < nb.cells.index(check), f"{path.name}: task {n}'s check comes first"
    assert len(written) == 1 and written[0].cell_type == "markdown" and nbgrader(written[0])["points"] == 2
    for cell in nb.cells:
        meta = nbgrader(cell)
        assert meta and meta["schema_version"] == 3, f"{path.name}: a cell without nbgrader metadata: {cell.source[:60]}"
        assert meta.get("solution") or meta.get("locked"), f"{path.name}: neither an answer nor read-only: {cell.source[:60]}"
        if not meta.get("solution"):
            assert BEGIN not in cell.source, f"{path.name}: a solution marker in a non-solution cell"
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code"), f"{path.name}: strip outputs"


def readme_rows() -> dict[str, list[str]]:
    return {line.split("|")[1].strip(" `"): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in (ROOT / "exercises" / "README.md").read_text().splitlines() if line.startswith("| `ex")}


def test_the_guide_gives_each_exercise_its_tasks_points_difficulty_and_time():
    rows = readme_rows()
    assert rows.keys() == set(EXERCISES)
    for path in SOLUTIONS:
        nb = read(path)
        tasks, points = len(checks_of(nb)), sum(nbgrader(c)["points"] for c in checks_of(nb))
        _builds_on, n_tasks, auto_points, difficulty, _objectives, minutes = rows[path.stem]
        assert int(n_tasks) == tasks, f"exercises/README.md says {path.stem} has {n_tasks} tasks; it has {tasks}"
        assert auto_points == f"{points:g} + 2", f"{path.stem}: the guide says {auto_points} points, the checks give {points:g} + 2"
        assert len(re.findall("[★☆]", difficulty)) == 3 and re.fullmatch(r"\d+ min", minutes), rows[path.stem]
        header = nb.cells[0].source
        assert f"About {minutes.split()[0]} minutes" in header and f"{points:g} points" in header, path.stem
        assert difficulty[:3] in header, f"{path.stem}: the notebook and the guide disagree on its difficulty"


def test_the_guide_has_a_rubric_for_every_written_question():
    text = (ROOT / "exercises" / "README.md").read_text()
    for name in EXERCISES:
        section = re.search(rf"^### `{name}`.*?(?=^### |\Z)", text, flags=re.M | re.S)
        assert section, f"exercises/README.md: no rubric section for {name}"
        assert section.group(0).count("1 point") >= 2, f"{name}: its rubric should give two 1-point criteria"


@pytest.mark.parametrize("name", EXERCISES)
def test_every_task_has_at_least_two_wrong_solutions(name):
    tasks = [nbgrader(c)["grade_id"] for c in checks_of(read(ROOT / "solutions" / f"{name}.ipynb"))]
    wrong = wrong_solutions(name)
    assert sorted(wrong) == sorted(tasks), f"tests/wrong_solutions/{name}.py: tasks {sorted(wrong)}, notebook {tasks}"
    for task in tasks:
        assert len(wrong[task]) >= 2, f"{name} {task}: at least two wrong solutions"


# ---- running the checks in-process ---------------------------------------------------------------

class Run:
    """A solution notebook run cell by cell in one namespace, as its kernel would."""

    def __init__(self, name: str):
        import matplotlib

        matplotlib.use("Agg")
        self.nb = read(ROOT / "solutions" / f"{name}.ipynb")
        self.release = {nbgrader(c)["grade_id"]: c for c in read(ROOT / "exercises" / f"{name}.ipynb").cells}
        self.cells = {nbgrader(c)["grade_id"]: c for c in self.nb.cells}
        self.namespace = {"__name__": "__main__"}
        self.printed = {}
        for cell in self.nb.cells:
            if cell.cell_type == "code":
                self.printed[nbgrader(cell)["grade_id"]] = self.execute(cell.source, self.namespace)

    @staticmethod
    def execute(source: str, namespace: dict) -> str:
        import matplotlib.pyplot as plt

        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - the kit's own notebooks
        finally:
            plt.close("all")
        return out.getvalue()

    def check_with(self, task: str, solution: str) -> str:
        """Run `task`'s check after `solution` replaced its solution cell; what it printed."""
        namespace = dict(self.namespace)
        self.execute(solution, namespace)
        return self.execute(self.cells[task].source, namespace)


_RUNS: dict[str, Run] = {}


@pytest.fixture(scope="module")
def real_course(real_root, weights_dir):
    saved = {k: os.environ.get(k) for k in ("HEMATO_DATA", "HEMATO_WEIGHTS_DIR", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ.update(HEMATO_DATA=str(real_root), HEMATO_WEIGHTS_DIR=str(weights_dir), TF_CPP_MIN_LOG_LEVEL="3")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


SECOND_LAB = {"ex06_domain_shift"}  # they read the PBC images (HEMATO_PBC): never downloaded in a test


def solved(name: str) -> Run:
    if name in SECOND_LAB and not Path(os.environ.get("HEMATO_PBC") or "/nonexistent").is_dir():
        pytest.skip("second lab's images not available: set HEMATO_PBC (CI does)")
    if name not in _RUNS:
        _RUNS[name] = Run(name)
    return _RUNS[name]


WRONG_CASES = [(name, task, i) for name in EXERCISES for task, wrongs in wrong_solutions(name).items()
               for i in range(len(wrongs))]


@pytest.mark.real_data
@pytest.mark.parametrize("name", EXERCISES)
def test_the_solution_passes_every_check(name, real_course):
    run = solved(name)
    for check in checks_of(run.nb):
        task = nbgrader(check)["grade_id"]
        assert f"Task {task[4:]} passed" in run.printed[task], f"{name} {task} printed: {run.printed[task]!r}"


@pytest.mark.real_data
@pytest.mark.parametrize("name, task, index", WRONG_CASES,
                         ids=[f"{n}-{t}-{wrong_solutions(n)[t][i].mistake}" for n, t, i in WRONG_CASES])
def test_a_wrong_solution_fails_its_check_with_a_message_that_says_why(name, task, index, real_course):
    wrong = wrong_solutions(name)[task][index]
    run = solved(name)
    with pytest.raises(AssertionError) as failure:
        run.check_with(task, wrong.source)
    assert wrong.says in str(failure.value), f"{name} {task} ({wrong.mistake}): the check said {failure.value}"


RIGHT_AUGMENTERS = {  # exercise 2, task 1: other correct ways of seeding, which its check must accept
    "seeded once, as notebook 02 does": """
def make_augmenter(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical"),
                             keras.layers.RandomRotation(0.05, fill_mode="reflect"),
                             keras.layers.RandomContrast(0.2)])
""",
    "seed + i in a loop": """
def make_augmenter(seed):
    kinds = [keras.layers.RandomFlip, keras.layers.RandomRotation, keras.layers.RandomContrast]
    return keras.Sequential([kind(arg, seed=seed + i) for i, (kind, arg) in enumerate(zip(kinds, ["vertical", 0.1, 0.2]))])
""",
}


@pytest.mark.real_data
@pytest.mark.parametrize("way", RIGHT_AUGMENTERS)
def test_exercise_2_accepts_each_right_way_of_seeding_the_layers(way, real_course):
    assert "Task 1 passed" in solved("ex02_augmentation").check_with("task1", RIGHT_AUGMENTERS[way])


@pytest.mark.real_data
@pytest.mark.parametrize("name", EXERCISES)
def test_every_check_fails_while_its_task_is_unsolved(name, real_course):
    run = solved(name)
    for check in checks_of(run.nb):
        task = nbgrader(check)["grade_id"]
        stub = run.release[f"{task}_solution"].source
        assert "raise NotImplementedError()" in stub
        with pytest.raises(NotImplementedError):
            run.check_with(task, stub)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_each_exercise_opens_itself_in_colab_and_links_a_course_notebook_that_exists(path):
    header = read(path).cells[0].source
    assert f"/exercises/{path.stem}.ipynb)" in header, f"{path.name}: its Colab badge opens another notebook"
    linked = re.findall(r"\]\(\.\./notebooks/([^)]+\.ipynb)\)", header)
    assert linked and all((ROOT / "notebooks" / name).exists() for name in linked), f"{path.name} builds on {linked}"
    number = path.stem[2:4]
    assert all(name.startswith(number) for name in linked), f"{path.name} should build on notebook {number}"
