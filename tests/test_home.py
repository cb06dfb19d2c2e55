"""Every Colab badge and setup cell names the kit's home (hematolib/home.py); tools/set_home.py moves
it; the setup cell fetches the pinned version and stops, saying what to do, when a step fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hematolib import home
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent
set_home = load_script("tools/set_home.py")

BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+)/([^/\s)]+)/blob/([^/\s)]+)/([^\s)]+)\)")
ASSIGNED = {name: re.compile(rf'^\s*{name} = "([^"]*)"', re.M) for name in ("REPOSITORY", "REF")}
GITHUB_URL = re.compile(r"https://github\.com/[^\s\"')]+")


def setup_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]


def home_problems(root: Path, repository: str, ref: str) -> list[str]:
    """Every badge or Colab setup cell under `root` that does not name `repository` at `ref`."""
    problems = []
    for folder in home.FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            where = f"{folder}/{path.name}"
            nb = nbformat.read(path, as_version=4)
            badges = [m for c in nb.cells if c.cell_type == "markdown" for m in BADGE.finditer(c.source)]
            if path.read_text().count("colab.research.google.com/github/") != len(badges):
                problems.append(f"{where}: a Colab link that is not a badge in a markdown cell")
            for m in badges:
                if (f"https://github.com/{m[1]}/{m[2]}", m[3]) != (repository, ref):
                    problems.append(f"{where}: badge opens github.com/{m[1]}/{m[2]} at {m[3]}")
                if m[4] != home.badge_target(folder, path.name):
                    problems.append(f"{where}: badge opens {m[4]}")
            setups = setup_cells(nb)
            for cell in setups:
                named = {name: rx.findall(cell.source) for name, rx in ASSIGNED.items()}
                if named != {"REPOSITORY": [repository], "REF": [ref]}:
                    problems.append(f"{where}: setup cell names {named}")
                if set(GITHUB_URL.findall(cell.source)) - {repository}:
                    problems.append(f"{where}: setup cell names {set(GITHUB_URL.findall(cell.source))}")
                if any(line.lstrip().startswith(("!", "%")) for line in cell.source.splitlines()):
                    problems.append(f"{where}: a shell command whose failure Colab ignores")
            if folder != "app" and (len(badges), len(setups)) != (1, 1):
                problems.append(f"{where}: {len(badges)} badge(s), {len(setups)} setup cell(s); expected one each")
    return problems


def copy_of_kit(dest: Path) -> Path:
    (dest / "hematolib").mkdir(parents=True)
    shutil.copy(ROOT / "hematolib" / "home.py", dest / "hematolib" / "home.py")
    for folder in home.FOLDERS:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


# --- one home, named everywhere -------------------------------------------------------------------

def test_every_badge_and_setup_cell_names_the_home_in_hematolib_home():
    assert home_problems(ROOT, home.REPOSITORY, home.REF) == []


def test_the_home_is_a_github_repository_pinned_at_a_tag_or_commit():
    assert home.check_repository(home.REPOSITORY) == home.REPOSITORY
    assert home.check_ref(home.REF) == home.REF
    if "YOUR-GITHUB-ACCOUNT" in home.REPOSITORY:
        assert "PLACEHOLDER" in (ROOT / "hematolib" / "home.py").read_text()


def test_the_check_fails_when_one_notebook_names_another_home(tmp_path):
    kit = copy_of_kit(tmp_path / "kit")
    path = kit / "notebooks" / "05_evaluation.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace(home.colab_url("notebooks/05_evaluation.ipynb"),
                                                    home.colab_url("notebooks/05_evaluation.ipynb",
                                                                   "https://github.com/someone/else", home.REF))
    nbformat.write(nb, path)
    assert home_problems(kit, home.REPOSITORY, home.REF) == [
        f"notebooks/05_evaluation.ipynb: badge opens github.com/someone/else at {home.REF}"]


@pytest.mark.parametrize("old, new, message", [
    ('REF = "{ref}"', 'REF = "main"', "setup cell names"),
    ('REPOSITORY = "{repository}"', 'REPOSITORY = "https://github.com/hematovision/hematovision"',
     "setup cell names"),
    ("import os\n", "import os\n!git clone --depth 1 {repository} /content/hematovision\n",
     "a shell command whose failure Colab ignores"),
])
def test_the_check_fails_on_a_setup_cell_that_fetches_from_elsewhere(tmp_path, old, new, message):
    kit = copy_of_kit(tmp_path / "kit")
    path = kit / "solutions" / "ex02_augmentation.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = setup_cells(nb)[0]
    old, new = (s.format(repository=home.REPOSITORY, ref=home.REF) for s in (old, new))
    assert old in cell.source
    cell.source = cell.source.replace(old, new)
    nbformat.write(nb, path)
    problems = home_problems(kit, home.REPOSITORY, home.REF)
    assert problems and all(p.startswith("solutions/ex02_augmentation.ipynb: ") for p in problems)
    assert any(p.startswith("solutions/ex02_augmentation.ipynb: " + message) for p in problems)


def test_the_check_fails_on_a_notebook_without_its_badge(tmp_path):
    kit = copy_of_kit(tmp_path / "kit")
    path = kit / "exercises" / "ex01_explore_data.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = BADGE.sub(")", nb.cells[0].source)
    nbformat.write(nb, path)
    assert home_problems(kit, home.REPOSITORY, home.REF) == [
        "exercises/ex01_explore_data.ipynb: 0 badge(s), 1 setup cell(s); expected one each"]


# --- tools/set_home.py -----------------------------------------------------------------------------

def test_set_home_moves_every_badge_setup_cell_and_home_py(tmp_path, capsys):
    kit = copy_of_kit(tmp_path / "kit")
    before = {p: nbformat.read(p, as_version=4) for p in sorted(kit.glob("*/*.ipynb"))}
    homed = [p for p in before if BADGE.search(p.read_text())]
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert set_home.main(["https://github.com/a-fork/wbc-course.git/", commit, "--root", str(kit)]) == 0
    assert home_problems(kit, "https://github.com/a-fork/wbc-course", commit) == []
    flagged = {p.split(":")[0] for p in home_problems(kit, home.REPOSITORY, home.REF)}  # by the old home
    assert len(homed) >= 18 and flagged == {f"{p.parent.name}/{p.name}" for p in homed}
    text = (kit / "hematolib" / "home.py").read_text()
    assert 'REPOSITORY = "https://github.com/a-fork/wbc-course"' in text and f'REF = "{commit}"' in text
    assert f"{len(homed) + 1} file(s) updated" in capsys.readouterr().out  # the notebooks and home.py
    for path, old in before.items():  # the same cells, ids and (no) outputs; only badges and setup cells differ
        new = nbformat.read(path, as_version=4)
        assert [c.id for c in new.cells] == [c.id for c in old.cells]
        for a, b in zip(old.cells, new.cells):
            if a.source != b.source:
                assert b in setup_cells(new) or BADGE.search(b.source), f"{path.name}: changed {b.source[:80]}"
            assert b.get("outputs", []) == [] and b.get("execution_count") is None
    assert set_home.set_home("https://github.com/a-fork/wbc-course", commit, kit) == []  # nothing left to do


@pytest.mark.parametrize("url, ref, message", [
    ("https://gitlab.com/a/b", "v1", "expected a GitHub repository URL"),
    ("github.com/a/b", "v1", "expected a GitHub repository URL"),
    ("https://github.com/a/b", "main", "is a branch, and a branch moves"),
    ("https://github.com/a/b", "release/1.0", "no '/'"),
])
def test_set_home_refuses_what_colab_cannot_open_and_changes_nothing(tmp_path, capsys, url, ref, message):
    kit = copy_of_kit(tmp_path / "kit")
    before = {p: p.read_bytes() for p in kit.rglob("*") if p.is_file()}
    assert set_home.main([url, ref, "--root", str(kit)]) == 2
    assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in kit.rglob("*") if p.is_file()} == before


# --- the Colab setup cell ---------------------------------------------------------------------------

def test_every_setup_cell_is_the_same_but_for_its_folder():
    cells = {f"{folder}/{p.name}": setup_cells(nbformat.read(p, as_version=4))[0].source
             for folder in ("notebooks", "solutions") for p in sorted((ROOT / folder).glob("*.ipynb"))}
    assert len({s.replace("/exercises", "/notebooks") for s in cells.values()}) == 1
    assert all(f'os.chdir(f"{{KIT}}/{"notebooks" if k.startswith("notebooks") else "exercises"}")' in s
               for k, s in cells.items())


def published_kit(tmp_path: Path) -> Path:
    """A git repository with the tag v-test, and a later commit on its branch."""
    repo = tmp_path / "published"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-C", str(repo)]
    (repo / "notebooks").mkdir(parents=True)
    (repo / "exercises").mkdir()
    (repo / "exercises" / "README.md").write_text("exercises")
    (repo / "notebooks" / "VERSION").write_text("tagged")
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "--quiet", "-m", "kit"], check=True)
    subprocess.run(git + ["tag", "v-test"], check=True)
    (repo / "notebooks" / "VERSION").write_text("moved on")
    subprocess.run(git + ["commit", "--quiet", "-am", "later"], check=True)
    return repo


def run_setup_cell(notebook: Path, tmp_path: Path, repository: str, ref: str, pip_exit: int = 0):
    """Run `notebook`'s setup cell as Colab would, with git for real against `repository` and pip
    and the dataset download replaced by stubs that record their call."""
    source = setup_cells(nbformat.read(notebook, as_version=4))[0].source
    kit = tmp_path / "content" / "hematovision"
    source = (source.replace('KIT = "/content/hematovision"', f"KIT = {str(kit)!r}")
              .replace(f'REPOSITORY = "{home.REPOSITORY}"', f"REPOSITORY = {repository!r}")
              .replace(f'REF = "{home.REF}"', f"REF = {ref!r}"))
    assert str(kit) in source and repository in source
    (tmp_path / "cell.py").write_text(source)
    (tmp_path / "stub" / "pip").mkdir(parents=True, exist_ok=True)
    (tmp_path / "stub" / "pip" / "__init__.py").write_text("")  # a package: found before the real pip
    (tmp_path / "stub" / "pip" / "__main__.py").write_text(
        f"import pathlib, sys\npathlib.Path({str(tmp_path / 'pip.log')!r}).write_text(' '.join(sys.argv[1:]))\n"
        f"sys.exit({pip_exit})\n")
    harness = ("import sys, types\n"
               "sys.modules['google.colab'] = types.ModuleType('google.colab')\n"
               "import hematolib.download\n"
               "hematolib.download.download_dataset = lambda *a, **k: print('DOWNLOADED THE DATASET')\n"
               f"exec(compile(open({str(tmp_path / 'cell.py')!r}).read(), 'setup cell', 'exec'))\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "stub"), "HEMATO_MODELS": str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-c", harness], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    pip_log = tmp_path / "pip.log"
    return done, kit, pip_log.read_text() if pip_log.exists() else None


@pytest.mark.parametrize("notebook", ["notebooks/01_explore_data.ipynb", "solutions/ex05_evaluation.ipynb"])
def test_setup_cell_fetches_the_pinned_tag_installs_and_downloads(tmp_path, notebook):
    repo = published_kit(tmp_path)
    done, kit, pip_args = run_setup_cell(ROOT / notebook, tmp_path, repo.as_uri(), "v-test")
    assert done.returncode == 0, done.stderr
    assert (kit / "notebooks" / "VERSION").read_text() == "tagged"  # the tag, not the branch's newer commit
    assert pip_args == f"install --quiet -e {kit}"
    assert f"HematoVision v-test is installed; models are kept in {tmp_path / 'models'}" in done.stdout
    assert done.stdout.rstrip().endswith("DOWNLOADED THE DATASET")
    # run again in the same session: it still works
    again, _, _ = run_setup_cell(ROOT / notebook, tmp_path, repo.as_uri(), "v-test")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("what", ["no such repository", "no such tag"])
def test_setup_cell_stops_and_says_what_to_do_when_the_fetch_fails(tmp_path, what):
    repo = published_kit(tmp_path)
    repository = (tmp_path / "nowhere").as_uri() if what == "no such repository" else repo.as_uri()
    done, kit, pip_args = run_setup_cell(ROOT / "notebooks/04_fine_tuning.ipynb", tmp_path, repository,
                                         "v-test" if what == "no such repository" else "v9.9")
    assert done.returncode != 0
    error = done.stderr[done.stderr.index("RuntimeError"):]
    assert "Colab setup failed: `git -C" in error and " fetch " in error
    assert f"does {repository} have the tag or commit" in error and "run this cell again" in error
    assert pip_args is None and "DOWNLOADED" not in done.stdout  # nothing after the failed step ran


def test_setup_cell_stops_and_says_what_to_do_when_the_install_fails(tmp_path):
    repo = published_kit(tmp_path)
    done, _, pip_args = run_setup_cell(ROOT / "notebooks/07_classify_widget.ipynb", tmp_path, repo.as_uri(),
                                       "v-test", pip_exit=1)
    assert done.returncode != 0 and pip_args is not None
    assert "Colab setup failed" in done.stderr and "Runtime > Disconnect and delete runtime" in done.stderr
    assert "DOWNLOADED" not in done.stdout


def test_outside_colab_the_setup_cell_does_nothing(monkeypatch):
    source = setup_cells(nbformat.read(ROOT / "notebooks/03_build_mobilenetv2.ipynb", as_version=4))[0].source
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    cwd = os.getcwd()
    exec(compile(source, "setup cell", "exec"), {})
    assert os.getcwd() == cwd


def test_the_setup_cell_offers_to_keep_models_in_google_drive():
    source = setup_cells(nbformat.read(ROOT / "notebooks/04_fine_tuning.ipynb", as_version=4))[0].source
    lines = source.splitlines()
    drive = [i for i, line in enumerate(lines) if "drive.mount(" in line or "HEMATO_MODELS" in line]
    assert drive and all(lines[i].lstrip().startswith("# ") for i in drive)  # an option, off by default
    assert "04 needs 03's head model" in source and "trains a quick, weaker one" in source
    uncommented = "\n".join(line.replace("# ", "", 1) if i in drive or "google.colab import drive" in line
                            else line for i, line in enumerate(lines))
    assert 'os.environ["HEMATO_MODELS"] = "/content/drive/MyDrive/hematovision/models"' in uncommented
    compile(uncommented, "setup cell with Drive", "exec")  # uncommented, it is valid Python
