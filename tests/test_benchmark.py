"""The benchmark script: how it scores and times the recipes, and how it keeps a run's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent


def script(name: str):
    """A script of benchmarks/ loaded as a module (they are not part of the package)."""
    return load_script(f"benchmarks/{name}.py")


@pytest.fixture(scope="module")
def benchmark():
    return script("benchmark")


def test_quick_runs_are_never_published(benchmark):
    with pytest.raises(SystemExit):
        benchmark.main(["--quick", "--readme"])


def test_time_to_85_percent_comes_from_the_first_snapshot_that_reached_it(benchmark):
    kit = {"train_seconds": 600.0, "test": {"accuracy": 0.86},
           "test_curve": [{"after": "head only", "seconds": 100.0, "test_accuracy": 0.70},
                          {"after": "epoch 1", "seconds": 160.0, "test_accuracy": 0.851},
                          {"after": "epoch 2", "seconds": 220.0, "test_accuracy": 0.84}]}
    assert benchmark.time_to(kit, 0.85) == 160.0
    assert benchmark.time_to(kit, 0.95) is None
    assert benchmark.time_to({**kit, "test_curve": []}, 0.85) == 600.0  # no curve: the whole run


def test_the_tutorial_is_scored_like_the_kit_on_the_cells_behind_the_images(benchmark, synthetic_root, weights_dir,
                                                                            monkeypatch):
    from hematolib.config import CLASS_NAMES
    from hematolib.data import load_dataset

    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    tut = benchmark.tutorial_recipe(load_dataset(synthetic_root), max_epochs=1, patience=1, max_batches=None)
    test = tut["test"]
    assert (test["n_images"], test["n_originals"]) == (48, 12)  # 3 TEST cells per class, 4 copies each
    assert test["ci_low"] <= test["accuracy"] <= test["ci_high"] and test["correct"] == round(test["accuracy"] * 48)
    assert list(test["recall"]) == list(CLASS_NAMES) and test["log_loss"] > 0 and 0 <= test["ece"] <= 1


def test_the_table_shows_both_recipes_calibration_and_a_dash_where_a_run_did_not_record_it(benchmark):
    published = json.loads((ROOT / "benchmarks" / "results-2026-11-27-2.json").read_text())  # the published run
    calibrated = {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "log_loss": 1.234, "ece": 0.31,
                  "recall": dict.fromkeys(("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"), 0.5)}
    run = {**published, "kit": {**published["kit"], "test": {**published["kit"]["test"], "log_loss": 0.456,
                                                             "ece": 0.052}},
           "tutorial": {**published["tutorial"], "test": calibrated}}
    row = next(line for line in benchmark.markdown(run).splitlines() if line.startswith("| TEST log loss"))
    assert row.endswith("| 0.46 / 5.2% | 1.23 / 31.0% |")
    assert "**50.0%** (95% CI 40.0%-60.0%, resampling cells) |" in benchmark.markdown(run)
    counted = {**run, "kit": {**run["kit"], "test": {**run["kit"]["test"], "n_originals": 70,
                                                                           "cells_missed": ["x"] * 9}}}
    assert "| TEST cells mostly right (more than half of their images) | 61 of 70 | - |" in benchmark.markdown(counted)
    old = {**published, "kit": {**published["kit"], "test": {k: v for k, v in published["kit"]["test"].items()
                                                             if k not in ("log_loss", "ece")}},
           "tutorial": {**published["tutorial"], "test": {"accuracy": 0.537}}}
    assert "| **53.7%** |" in benchmark.markdown(old)
    assert next(line for line in benchmark.markdown(old).splitlines()
                if line.startswith("| TEST log loss")).endswith("| - | - |")


@pytest.fixture
def project(benchmark, tmp_path, monkeypatch):
    """A project folder whose tools/publish_results.py records what it was asked to publish."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "publish_results.py").write_text(
        "from pathlib import Path\n"
        "def main(argv):\n"
        "    Path(__file__).with_name('published.txt').write_text(' '.join(argv))\n")
    monkeypatch.setattr(benchmark, "PROJECT_DIR", tmp_path)
    return tmp_path


def cited(project: Path) -> str:
    return (project / "tools" / "published.txt").read_text().split("--results ")[1]


def test_a_second_run_on_the_same_day_never_overwrites_the_first_runs_figures(benchmark, project):
    first = {"date": "2026-11-27", "command": "make benchmark", "kit": {"test": {"accuracy": 0.878}}}
    second = {**first, "kit": {"test": {"accuracy": 0.879}}}
    assert benchmark.publish(first).name == "results-2026-11-27.json"
    kept = (project / "benchmarks" / "results-2026-11-27.json").read_text()
    raw = benchmark.publish(second)
    assert raw.name == "results-2026-11-27-2.json" and json.loads(raw.read_text()) == second
    assert (project / "benchmarks" / "results-2026-11-27.json").read_text() == kept
    assert cited(project) == str(raw)  # the tables are written from the new figures
    assert benchmark.publish(second) == raw  # the same figures again: the same file


def test_the_time_target_says_by_how_much_it_is_missed(benchmark):
    kit = {"train_seconds": 900.0, "test": {"accuracy": 0.84, "ci_low": 0.77, "ci_high": 0.9},
           "test_simple": {"correct": 61}, "latency_keras": {"median_ms": 23.0},
           "test_curve": [{"after": "epoch 3", "seconds": 342.0, "test_accuracy": 0.852}]}
    text = benchmark.targets(kit, {"seconds_to_best": 1650.0, "test": {"accuracy": 0.537}})
    assert "kit: 5.7 min; limit 5.5 min" in text and "no: 0.2 min over the limit (1.04x)" in text
    assert "| TEST_SIMPLE >= 65/71 | 61/71 | no: 4 short |" in text


