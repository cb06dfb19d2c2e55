"""The course notebooks: hygiene without running them, then a papermill run and an nbval run in CI.

The papermill run uses small parameters on the real data and checks what each notebook produced.
nbval then re-executes the executed copies and compares the cells marked NBVAL_CHECK_OUTPUT with
the papermill outputs, so those outputs must be the same on every run with the same seed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hematolib import course, home
from hematolib.model_file import read_info

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = course.notebooks(ROOT / "notebooks")
SMALL = {"PER_CLASS": 24, "EPOCHS": 3, "FINE_TUNE_EPOCHS": 1, "FURTHER_EPOCHS": 1, "IMAGE_SIZE": 96,
         "ALPHA": 0.35, "STATS_PER_CLASS": 10, "PIPELINE_IMAGES": 32, "ROBUSTNESS_PER_CLASS": 10, "SAMPLES": 4,
         "GRAD_CAM_IMAGES": 2, "MISTAKES": 4}


def load(path: Path):
    return nbformat.read(path, as_version=4)


# --- hygiene ---------------------------------------------------------------------------------------

def test_seven_notebooks_numbered_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(1, 8)), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = load(path)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = load(path)
    first = nb.cells[0].source
    assert first.startswith(f"# {int(path.name[:2])}. "), "opens with a numbered title"
    badge = re.search(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", first)
    assert badge and badge.group(1) == home.colab_url(f"notebooks/{path.name}"), \
        "the Colab badge opens this notebook from the kit's home at its pinned version (hematolib/home.py)"
    assert "What you will learn" in first
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SEED" in tagged[0].source
    assert any("google.colab" in c.source for c in nb.cells if c.cell_type == "code")
    last = nb.cells[-1].source
    assert last.startswith("## Summary")
    if path != NOTEBOOKS[-1]:
        following = NOTEBOOKS[NOTEBOOKS.index(path) + 1].name
        assert f"({following})" in last, "the summary links to the next notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short_and_define_nothing(path):
    """A cell is read in one glance: the Keras a notebook teaches fits in one; plumbing is in hematolib."""
    for cell in load(path).cells:
        if cell.cell_type == "code" and "google.colab" not in cell.source:
            lines = [l for l in cell.source.splitlines() if l.strip() and not l.lstrip().startswith("#")]
            assert len(lines) <= 14, f"a long cell belongs in hematolib or in two cells:\n{cell.source}"
            assert not re.search(r"^\s*(def|class) ", cell.source, re.M), "functions belong in hematolib"


def test_notebook_06_fine_tunes_on_both_labs_as_long_as_the_benchmark_that_measured_it():
    from hematolib import recipe

    nb = load(ROOT / "notebooks" / "06_domain_shift.ipynb")
    parameters = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    exec(parameters, values)  # the cell is assignments of literals
    assert values["FURTHER_EPOCHS"] == recipe.FURTHER_EPOCHS
    assert any("fine_tune_further(tuned, both, config, epochs=FURTHER_EPOCHS)" in c.source for c in nb.cells)


# --- execution ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def executed(tmp_path_factory, real_root, weights_dir, pbc_root):
    """Run the whole course with small parameters into a temporary folder; yields (out dir, models dir)."""
    base = tmp_path_factory.mktemp("course")
    env = {"HEMATO_DATA": str(real_root), "HEMATO_WEIGHTS_DIR": str(weights_dir), "HEMATO_PBC": str(pbc_root),
           "HEMATO_MODELS": str(base / "models"), "HEMATO_CACHE": str(base / "cache")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        course.run_notebooks(base / "out", SMALL, progress=False)
        yield base / "out", base / "models", env
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def text_outputs(path: Path) -> str:
    out = []
    for cell in load(path).cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.output_type == "stream" else "".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.real_data
def test_course_runs_and_each_notebook_produces_its_results(executed):
    out, models, _ = executed
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    explore = text_outputs(out / "01_explore_data.ipynb")
    assert "TRAIN       all             9957        272" in explore
    named_zero = re.search(r"(\d) different cells among 6 images named _0_", explore)
    assert named_zero and int(named_zero.group(1)) >= 4  # file names are not cells (5 on the real data)
    assert "TRAIN and TEST share 2 cell(s)" in explore
    assert "TEST        MONOCYTE         620          4" in explore
    assert "(320, 240)" in explore
    augment = text_outputs(out / "02_augmentation.ipynb")
    assert "batch: (8, 96, 96, 3) float32 | labels: (8,) int32" in augment
    build = text_outputs(out / "03_build_mobilenetv2.ipynb")
    assert "cells on both sides: set()" in build
    assert "random split (leaky)" in build and "grouped by cell" in build and "head: epoch 3/3" in build
    head = read_info(models / "hematovision_head.keras")
    assert head.image_size == 96 and head.config["per_class"] == 24 and "VALIDATION" in head.metrics
    assert head.config["fine_tune_epochs"] == 0 and head.augmentation == {}  # a head on cached features
    tuned = read_info(models / "hematovision.keras")  # the held-out run (REFIT is off by default)
    tuning = text_outputs(out / "04_fine_tuning.ipynb")
    assert "0 layers with weights trainable" in tuning and "52 layers with weights trainable" in tuning
    assert tuned.image_size == 96 and tuned.config["per_class"] == 24
    # the kit's Progress callback printed the epoch and the time left: no live bar whose every
    # redraw the saved copy would keep
    assert "\b" not in tuning and re.search(r"fine-tuning: epoch 1/1 .* s/epoch, 0 s left", tuning)
    assert tuned.config["fine_tune_epochs"] == (1 if "Keeping the fine-tuned model" in tuning else 0)
    assert ("RandomRotation" in tuned.augmentation) == (tuned.config["fine_tune_epochs"] == 1)
    assert tuned.config["val_fraction"] == 0.2
    assert "VALIDATION" in tuned.metrics and "estimated_by" not in tuned.metrics["VALIDATION"]
    results = json.loads((models / "evaluation.json").read_text())
    assert results["TEST"]["n_images"] == 96 and results["TEST_SIMPLE"]["n_images"] == 71
    assert 0 <= results["TEST"]["ci_low"] <= results["TEST"]["accuracy"] <= results["TEST"]["ci_high"] <= 1
    assert set(results["robustness"]) >= {"none", "hue +0.05", "zoom in x1.5"}
    shift = text_outputs(out / "06_domain_shift.ipynb")
    assert re.search(r"PBC: \d+ training, \d+ validation and \d+ test images, one per cell", shift)
    assert "fine-tuned on both labs" in shift and re.search(r"flagged: +\d+\.\d% +PBC validation cells", shift)
    assert re.search(r"fine-tuning: epoch 1/1 .* s/epoch, 0 s left", shift)  # notebook 04's model, further
    two_labs = read_info(models / "hematovision_two_labs.keras")
    assert any("CC BY 4.0" in credit for credit in two_labs.credits) and two_labs.image_size == 96
    assert two_labs.further_training.endswith("both labs' training cells (epochs: 1)")
    assert "RandomRotation" in two_labs.augmentation and "ChannelJitter" not in two_labs.augmentation
    assert {"VALIDATION", "SECOND_LAB_VALIDATION"} <= set(two_labs.metrics)
    widget = text_outputs(out / "07_classify_widget.ipynb")
    assert "cards: 2 | errors: 1" in widget and f"model: {models / 'hematovision_two_labs.keras'}" in widget
    summary = course.summary([("x", 1.0)], models)
    assert "TEST accuracy" in summary and str(models / "hematovision.keras") in summary
    assert f"which the widget, predict and evaluate use: {models / 'hematovision_two_labs.keras'}" in summary


@pytest.mark.slow
@pytest.mark.real_data
def test_nbval_reruns_every_notebook_with_the_same_checked_outputs(executed):
    out, _, env = executed
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-o", "addopts=", "-q", *sorted(str(p) for p in out.glob("*.ipynb"))],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT / "notebooks", timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
