"""The benchmark script's publishing step: the README's table comes from a run, never by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "benchmarks" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_replaces_only_what_stands_between_the_markers(benchmark):
    readme = "intro\n<!-- benchmark -->\nold table\n<!-- /benchmark -->\nhonest reading\n"
    out = benchmark.with_table(readme, "| new | table |\n")
    assert out == "intro\n<!-- benchmark -->\n| new | table |\n<!-- /benchmark -->\nhonest reading\n"
    assert benchmark.with_table(out, "| newer |") .count("<!-- benchmark -->") == 1
    with pytest.raises(ValueError, match="lacks the markers"):
        benchmark.with_table("no markers here", "| t |")


def test_the_readme_holds_a_published_table_and_its_raw_figures_exist(benchmark):
    readme = (ROOT / "README.md").read_text()
    block = readme.split(benchmark.MARKERS[0])[1].split(benchmark.MARKERS[1])[0]
    assert "| **TEST accuracy**" in block and "Against the targets of issue #6" in block
    raw = block.split("Raw figures: `")[1].split("`")[0]
    assert (ROOT / raw).is_file()


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
