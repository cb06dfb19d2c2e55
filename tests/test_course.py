"""`make course` gets the real data first: downloaded (from a server on 127.0.0.1 here) when there is
none; offline, one clear paragraph and the synthetic set. No notebook runs: papermill is replaced."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hematolib import cli, course, download
from hematolib.data import DataNotFoundError, load_dataset
from tests.test_download import serve, server, source, synthetic_contents, zip_of  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def _no_hemato_data(monkeypatch):
    monkeypatch.delenv("HEMATO_DATA", raising=False)  # CI sets it; these tests decide for themselves


def closed_port_url() -> str:
    with socket.socket() as s:  # a port with nobody listening: as good as offline
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/blood-cells.zip"


def test_with_no_dataset_it_downloads_and_checks_one(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/ds.zip", zip_of(images))
    out = io.StringIO()
    target = course.ensure_data(tmp_path / "blood-cells", source(url, contents), progress=out)
    assert target == tmp_path / "blood-cells"
    assert sum(load_dataset(target).counts()["TRAIN"].values()) == 16
    assert "No dataset found (HEMATO_DATA is not set and" in out.getvalue()
    assert "downloading the Kaggle blood-cells dataset" in out.getvalue()


def test_a_dataset_in_place_is_used_without_a_download(synthetic_root, tmp_path):
    out = io.StringIO()
    offline = source(closed_port_url(), {})
    assert course.ensure_data(synthetic_root, offline, progress=out) == synthetic_root
    assert out.getvalue() == ""


def test_hemato_data_is_used_as_it_is(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    out = io.StringIO()
    offline = source(closed_port_url(), {})
    assert course.ensure_data(tmp_path / "blood-cells", offline, progress=out) == synthetic_root
    assert out.getvalue() == "" and not (tmp_path / "blood-cells").exists()


def test_hemato_data_naming_no_folder_is_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match="HEMATO_DATA=.*typo does not exist"):
        course.ensure_data(tmp_path / "blood-cells", source(closed_port_url(), {}), progress=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_offline_it_says_so_in_one_paragraph_and_leaves_the_synthetic_set(tmp_path):
    out = io.StringIO()
    assert course.ensure_data(tmp_path / "blood-cells", source(closed_port_url(), {}), progress=out) is None
    text = out.getvalue()
    paragraph = text[text.index("COULD NOT DOWNLOAD THE DATASET"):].strip()
    assert "\n\n" not in paragraph  # one paragraph
    for said in ("cannot connect", "Are you online?", "SYNTHETIC dataset", "say nothing about blood cells",
                 "`python -m hematolib download`", "HEMATO_DATA", "`make course` again"):
        assert said in " ".join(paragraph.split()), said
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded left behind


def test_a_download_that_is_not_the_dataset_falls_back_too_and_says_why(server, synthetic_contents, tmp_path):
    routes, base = server
    _, contents = synthetic_contents
    url = serve(routes, base, "/page.html", b"<html>not an archive</html>" * 40)
    out = io.StringIO()
    assert course.ensure_data(tmp_path / "blood-cells", source(url, contents), progress=out) is None
    assert "not a zip or tar archive" in out.getvalue() and "SYNTHETIC" in out.getvalue()
    assert list(tmp_path.iterdir()) == []


# --- the course entry point -------------------------------------------------------------------------

@pytest.fixture
def notebook_runner(monkeypatch, tmp_path):
    """Replace papermill's execute_notebook; yields the list of calls, each with whether the dataset
    (download.default_target(), pointed into tmp_path) existed when that notebook started."""
    import papermill

    target = tmp_path / "data" / "blood-cells"
    monkeypatch.setattr(download, "default_target", lambda: target)
    calls = []
    monkeypatch.setattr(papermill, "execute_notebook",
                        lambda nb, out, **kw: calls.append((Path(nb).name, target.exists())))
    return calls


def test_the_course_downloads_the_data_before_its_first_notebook(server, synthetic_contents, notebook_runner,
                                                                  monkeypatch, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    monkeypatch.setattr(download, "GITHUB_SOURCE", source(serve(routes, base, "/ds.zip", zip_of(images)), contents))
    out = io.StringIO()
    course.run_notebooks(tmp_path / "out", only=["01", "02"], progress=out)
    assert notebook_runner == [("01_explore_data.ipynb", True), ("02_augmentation.ipynb", True)]
    assert out.getvalue().index("downloading the Kaggle") < out.getvalue().index("== [1/2] 01_explore_data")


def test_offline_the_course_still_runs_after_saying_so(notebook_runner, monkeypatch, tmp_path):
    monkeypatch.setattr(download, "GITHUB_SOURCE", source(closed_port_url(), {}))
    out = io.StringIO()
    course.run_notebooks(tmp_path / "out", only=["01"], progress=out)
    assert notebook_runner == [("01_explore_data.ipynb", False)]  # the notebooks fall back to synthetic data
    assert out.getvalue().index("COULD NOT DOWNLOAD") < out.getvalue().index("== [1/1] 01_explore_data")


def test_make_course_stops_before_any_notebook_when_hemato_data_names_no_folder(notebook_runner, monkeypatch,
                                                                               tmp_path, capsys):
    monkeypatch.setenv("HEMATO_DATA", str(tmp_path / "typo"))
    assert cli.main(["course", "--out", str(tmp_path / "out"), "--only", "01"]) == 2
    assert "HEMATO_DATA=" in capsys.readouterr().err and notebook_runner == []


def test_without_the_second_labs_images_the_course_skips_its_notebook_and_says_so(notebook_runner, monkeypatch,
                                                                                  tmp_path, synthetic_root):
    from hematolib import pbc

    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    monkeypatch.delenv("HEMATO_PBC", raising=False)
    monkeypatch.setattr(pbc, "default_target", lambda: tmp_path / "no-pbc")
    monkeypatch.setattr(pbc, "PINNED", pbc.Snapshot(url=closed_port_url(), **{
        k: getattr(pbc.PINNED, k) for k in pbc.Snapshot.__dataclass_fields__ if k != "url"}))
    out = io.StringIO()
    course.run_notebooks(tmp_path / "out", only=["05", "06", "07"], progress=out)
    assert [name for name, _ in notebook_runner] == ["05_evaluation.ipynb", "07_classify_widget.ipynb"]
    assert "COULD NOT DOWNLOAD THE SECOND LAB'S IMAGES" in out.getvalue() and "skips 06_domain_shift" in out.getvalue()


def test_with_the_second_labs_images_the_course_runs_its_notebook(notebook_runner, monkeypatch, tmp_path,
                                                                  synthetic_root):
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    (tmp_path / "pbc").mkdir()
    monkeypatch.setenv("HEMATO_PBC", str(tmp_path / "pbc"))
    course.run_notebooks(tmp_path / "out", only=["06"], progress=io.StringIO())
    assert [name for name, _ in notebook_runner] == ["06_domain_shift.ipynb"]


@pytest.mark.slow
@pytest.mark.real_data
def test_make_course_on_a_clean_clone_downloads_the_real_data_from_a_mirror_before_notebook_01(
        server, real_root, tmp_path):
    routes, base = server
    root = Path(__file__).resolve().parent.parent
    kit = tmp_path / "kit"
    subprocess.run(["git", "clone", "--quiet", str(root), str(kit)], check=True)
    archive = zip_of(real_root / "dataset2-master" / "images", prefix=download.GITHUB_SOURCE.images_prefix)
    url = serve(routes, base, "/blood-cells.zip", archive)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEMATO_")}
    env |= {"HEMATO_DATA_URL": url, "PYTHONPATH": str(kit),   # the clone's kit, not this checkout's
            "HEMATO_CACHE": str(tmp_path / "cache"), "HEMATO_MODELS": str(tmp_path / "models")}
    done = subprocess.run(["make", "course", f"PY={sys.executable}", "STAMP=", "ARGS=--only 01"], cwd=kit, env=env,
                          capture_output=True, text=True, timeout=900)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    assert f"downloading the Kaggle blood-cells dataset from {url}" in said
    assert said.index(url) < said.index("== [1/1] 01_explore_data")
    assert load_dataset(kit / "data" / "blood-cells").counts()["TRAIN"]["EOSINOPHIL"] == 2497
    ran = nbformat.read(kit / "build" / "course" / "01_explore_data.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in ran.cells if c.cell_type == "code" for o in c.outputs)
    assert f"images from: {kit / 'data' / 'blood-cells' / 'dataset2-master' / 'images'}" in printed
    assert "synthetic: False" in printed and "'TRAIN': 9957" in printed


@pytest.mark.parametrize("synthetic", [False, True])
def test_the_closing_summary_names_the_two_lab_model_only_when_there_is_one(tmp_path, synthetic):
    two_labs = f"Two-lab model, which the widget, predict and evaluate use: {tmp_path / 'hematovision_two_labs.keras'}"
    (tmp_path / "hematovision_two_labs.keras").write_bytes(b"")
    assert course.summary([("06", 60.0)], tmp_path).endswith(two_labs)  # no results of notebook 05: no TEST line
    (tmp_path / "hematovision_two_labs.keras").unlink()
    results = {"TEST": {"accuracy": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n_originals": 70},
               "model": str(tmp_path / "hematovision.keras"), "synthetic_data": synthetic}
    (tmp_path / course.RESULTS_FILE).write_text(json.dumps(results))
    summary = course.summary([("05", 60.0)], tmp_path)  # 06 skipped: no two-lab model
    assert f"Model: {tmp_path / 'hematovision.keras'}" in summary and "Two-lab" not in summary
    assert ("WARNING: trained and tested on SYNTHETIC data" in summary) == synthetic
    (tmp_path / "hematovision_two_labs.keras").write_bytes(b"")
    assert two_labs in course.summary([("05", 60.0)], tmp_path)
