"""The benchmark script's publishing step: the README's table comes from a run, never by hand."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parent.parent


def script(name: str):
    """A script of benchmarks/ loaded as a module (they are not part of the package)."""
    return load_script(f"benchmarks/{name}.py")


@pytest.fixture(scope="module")
def benchmark():
    return script("benchmark")


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
    # the recipe search's table sits in the document the README links to
    assert "(docs/recipe-search.md)" in readme and "<!-- selection -->" not in readme
    search = (ROOT / "docs" / "recipe-search.md").read_text()
    selection = search.split("<!-- selection -->")[1].split("<!-- /selection -->")[0]
    assert "| candidate |" in selection and (ROOT / "benchmarks" / "selection.json").is_file()


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


@pytest.fixture(scope="module")
def select_recipe():
    return script("select_recipe")


def candidate_row(name, log_loss, image_size=128, **extra):
    return {"name": name, "config": {"alpha": 0.35, "image_size": image_size, "fine_tune_layers": None,
                                     "fine_tune_epochs": 8}, "val": 0.99, "val_tta": 0.995,
            "val_log_loss_tta": log_loss, "val_shifted_mean": 0.95, "fine_tune_seconds": 600.0, **extra}


def test_the_selection_table_ranks_honest_runs_first_then_by_validation_log_loss(select_recipe, benchmark,
                                                                                 monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: it imports benchmark.py
    honest = {"grouping": "photograph"}
    rows = [candidate_row("a", 0.05, **honest), candidate_row("b", 0.03, image_size=160, **honest),
            candidate_row("a", 0.01, augmentation={"zoom": 0.3}, **honest)]  # a's rerun replaces its first run
    rows.append(candidate_row("b-seed7", 0.04, **honest))
    rows[-1]["config"]["seed"] = 7
    rows.append(candidate_row("b", 0.001, image_size=160))  # grouped by file name: kept, but last and marked
    rows.append(candidate_row("slow", 0.06, **honest))
    rows[-1]["config"].update(fine_tune_learning_rate=5e-5, mixup=0.0)
    rows.append(candidate_row("mixed", 0.07, **honest))
    rows[-1]["config"].update(mixup=0.2, anchor_pull=10.0, recalibrate_batchnorm=True, stain_norm=True)
    lines = select_recipe.table(rows).splitlines()[2:]
    assert len(lines) == 6 and "rate" not in "".join(lines[:3] + lines[5:])
    assert "mixup" not in "".join(lines[:4] + lines[5:]) and "L2-SP" not in "".join(lines[:4] + lines[5:])
    assert lines[3].startswith("| `slow`: alpha 0.35, 128 px, whole base x 8, fine-tuning rate 5e-05 |")
    assert lines[4].startswith("| `mixed`: alpha 0.35, 128 px, whole base x 8, mixup 0.2, "
                               "pull towards the start (L2-SP) 10, BatchNorm recalibrated (AdaBN), "
                               "stain normalised per crop |")
    del lines[3:5]
    assert lines[0].startswith("| `a`: alpha 0.35, 128 px, whole base x 8, zoom 0.3 | by photograph | 99.0% "
                               "| 99.5% | 0.010 |")
    assert lines[1].startswith("| `b`: alpha 0.35, 160 px") and "seed" not in lines[1]
    assert lines[2].startswith("| `b-seed7`: alpha 0.35, 128 px, whole base x 8, seed 7 (other validation cells) |")
    assert lines[3].startswith("| `b`: alpha 0.35, 160 px, whole base x 8 | by file name (**leaky**) | 99.0%")
    readme = f"intro\n{select_recipe.MARKERS[0]}\nold\n{select_recipe.MARKERS[1]}\n"
    out = benchmark.with_table(readme, select_recipe.table(rows), select_recipe.MARKERS)
    assert "old" not in out and out.count("`a`") == 1 and out.startswith("intro\n")


def test_publishing_a_fresh_clones_runs_keeps_the_candidates_published_before(select_recipe, tmp_path,
                                                                              monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as when the script runs: it imports benchmark.py
    honest = {"grouping": "photograph"}
    raw, readme = tmp_path / "selection.json", tmp_path / "README.md"
    raw.write_text(json.dumps([candidate_row("a", 0.05, **honest), candidate_row("b", 0.03, **honest)]))
    readme.write_text(f"intro\n{select_recipe.MARKERS[0]}\nold\n{select_recipe.MARKERS[1]}\n")
    select_recipe.publish([candidate_row("a", 0.01, **honest), candidate_row("c", 0.02, **honest)], raw, readme)
    rows = json.loads(raw.read_text())
    assert {(r["name"], r["val_log_loss_tta"]) for r in rows} == {("a", 0.01), ("b", 0.03), ("c", 0.02)}
    table = readme.read_text().split(select_recipe.MARKERS[0])[1]
    assert [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")] == ["a", "c", "b"]


def test_the_eight_symmetries_of_a_crop_start_with_the_kits_four_flips(select_recipe):
    import numpy as np

    cells = np.random.default_rng(0).random((2, 6, 6, 3)).astype(np.float32)
    views = select_recipe.symmetries(cells)
    assert [v.shape for v in views] == [cells.shape] * 8 and len({v.tobytes() for v in views}) == 8
    np.testing.assert_array_equal(views[0], cells)  # as is, then mirrored, upside down, both
    np.testing.assert_array_equal(views[1], cells[:, :, ::-1])
    np.testing.assert_array_equal(views[3], cells[:, ::-1, ::-1])
    turned = np.rot90(cells, 1, axes=(1, 2))
    assert any(np.array_equal(v, turned) for v in views[4:])  # a quarter turn is among the transposed four


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
    block = (ROOT / "README.md").read_text().split(benchmark.MARKERS[0])[1]
    published = json.loads((ROOT / block.split("Raw figures: `")[1].split("`")[0]).read_text())  # the README's run
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


def test_only_a_full_runs_figures_can_be_republished(benchmark, tmp_path):
    quick = tmp_path / "results.json"
    quick.write_text('{"command": "make benchmark ARGS=--quick"}')
    with pytest.raises(SystemExit):
        benchmark.main(["--republish", str(quick)])


@pytest.fixture
def project(benchmark, tmp_path, monkeypatch):
    """A project folder with a README holding the benchmark's markers, in place of the kit's."""
    (tmp_path / "benchmarks").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{benchmark.MARKERS[0]}\nold\n{benchmark.MARKERS[1]}\n")
    monkeypatch.setattr(benchmark, "PROJECT_DIR", tmp_path)
    monkeypatch.setattr(benchmark, "README", readme)
    return tmp_path


def cited(readme: Path) -> str:
    return readme.read_text().split("Raw figures: `")[1].split("`")[0]


def test_a_second_run_on_the_same_day_never_overwrites_the_first_runs_figures(benchmark, project):
    first = {"date": "2026-11-27", "command": "make benchmark", "kit": {"test": {"accuracy": 0.878}}}
    second = {**first, "kit": {"test": {"accuracy": 0.879}}}
    assert benchmark.publish(first, "| first |").name == "results-2026-11-27.json"
    kept = (project / "benchmarks" / "results-2026-11-27.json").read_text()
    raw = benchmark.publish(second, "| second |")
    assert raw.name == "results-2026-11-27-2.json" and json.loads(raw.read_text()) == second
    assert (project / "benchmarks" / "results-2026-11-27.json").read_text() == kept
    assert cited(project / "README.md") == "benchmarks/results-2026-11-27-2.json"
    assert "| second |" in (project / "README.md").read_text()
    assert benchmark.publish(second, "| again |") == raw  # the same figures again: the same file


def test_republishing_a_renamed_runs_figures_cites_that_file_and_leaves_the_others_alone(benchmark, project,
                                                                                        monkeypatch):
    other = project / "benchmarks" / "results-2026-11-27.json"
    other.write_text('{"another": "run"}\n')
    renamed = project / "benchmarks" / "results-2026-11-27-24epochs.json"
    renamed.write_text(json.dumps({"date": "2026-11-27", "command": "make benchmark", "kit": {}}))
    before = renamed.read_text()
    monkeypatch.setattr(benchmark, "markdown", lambda results: "| republished |")
    assert benchmark.main(["--republish", str(renamed)]) == 0
    assert cited(project / "README.md") == "benchmarks/results-2026-11-27-24epochs.json"
    assert renamed.read_text() == before and other.read_text() == '{"another": "run"}\n'
    assert sorted(p.name for p in (project / "benchmarks").iterdir()) == [
        "results-2026-11-27-24epochs.json", "results-2026-11-27.json"]


def test_the_time_target_says_by_how_much_it_is_missed(benchmark):
    kit = {"train_seconds": 900.0, "test": {"accuracy": 0.84, "ci_low": 0.77, "ci_high": 0.9},
           "test_simple": {"correct": 61}, "latency_keras": {"median_ms": 23.0},
           "test_curve": [{"after": "epoch 3", "seconds": 342.0, "test_accuracy": 0.852}]}
    text = benchmark.targets(kit, {"seconds_to_best": 1650.0, "test": {"accuracy": 0.537}})
    assert "kit: 5.7 min; limit 5.5 min" in text and "no: 0.2 min over the limit (1.04x)" in text
    assert "| TEST_SIMPLE >= 65/71 | 61/71 | no: 4 short |" in text


def test_a_refit_reports_the_held_out_run_of_the_same_recipe(benchmark, tmp_path):
    from hematolib.config import Config
    from hematolib.recipe import refit_config

    config = refit_config(Config())
    held = {**Config().to_dict(), "schedule": "cosine"}
    rows = [{"name": "other", "config": {**held, "image_size": 96}},
            {"name": "strong", "config": held, "augmentation": {"zoom": 0.3}},
            {"name": "fewer", "config": held, "augmentation": {}, "train_share": 0.75},
            {"name": "leaky", "config": held, "augmentation": {}},  # grouped by file name: no estimate
            {"name": "same", "config": held, "augmentation": {}, "train_share": 1.0, "grouping": "photograph"}]
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps(rows))
    assert benchmark.held_out_run(config, selection)["name"] == "same"
    other_size = refit_config(Config(image_size=Config().image_size + 32))  # no held-out run of it
    assert benchmark.held_out_run(other_size, selection) is None
    # a run recorded before a Config field existed trained with the value it had then
    before_mixup = {k: v for k, v in held.items()
                    if k not in ("mixup", "anchor_pull", "recalibrate_batchnorm", "stain_norm")}
    before_warmup = {k: v for k, v in before_mixup.items() if k != "warmup_epochs"}  # no warm-up then
    rows = [{"name": n, "config": c, "grouping": "photograph"}
            for n, c in (("no warm-up", before_warmup), ("no mixup field", before_mixup))]
    selection.write_text(json.dumps(rows))
    assert benchmark.held_out_run(config, selection)["name"] == "no mixup field"
    assert benchmark.held_out_run(replace(config, mixup=0.2), selection) is None
    assert benchmark.held_out_run(replace(config, anchor_pull=10.0), selection) is None
    assert benchmark.held_out_run(replace(config, recalibrate_batchnorm=True), selection) is None
    assert benchmark.held_out_run(replace(config, stain_norm=True), selection) is None
    # the published selection holds the default recipe's held-out run: the README's validation row
    assert benchmark.held_out_run(config) is not None, "rerun select_recipe.py for the default recipe"


def test_an_ensemble_reports_the_mistakes_its_members_share(select_recipe):
    labels = np.zeros(9, int)
    groups = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3)
    first = np.eye(2)[[1, 1, 0, 1, 1, 0, 1, 0, 0]]  # wrong on most of a and b, one of c
    second = np.eye(2)[[1, 1, 1, 1, 0, 0, 0, 0, 0]]  # wrong on all of a, one of b
    out = select_recipe.shared_mistakes([first, second], labels, groups)
    assert out["wrong"] == [5, 4] and out["shared_with_first"] == [5, 3]
    assert out["cells_missed"] == [2, 1] and out["cells"] == 3
    assert out["cells_all_missed"] == ["a"]  # b: the second member gets two of its three right


def test_an_ensemble_refuses_members_that_held_out_different_cells(select_recipe, capsys):
    with pytest.raises(SystemExit):  # seeds 42 and 7: their validation cells differ
        select_recipe.main(["--ensemble", "0.35-all-8-160-cosine", "0.35-all-8-160-cosine-seed7"])
    assert "same cells (one seed)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        select_recipe.main(["--ensemble", "0.35-all-8-160-cosine"])  # one model is no ensemble
    assert "two or more candidates" in capsys.readouterr().err


@pytest.mark.real_data
def test_cross_validation_scores_every_training_cell_once_and_never_reads_test(select_recipe, synthetic_root,
                                                                               weights_dir, monkeypatch):
    from hematolib.config import Config
    from hematolib.data import load_dataset

    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    ds = load_dataset(synthetic_root)
    ds = replace(ds, splits={"TRAIN": ds.train})  # no TEST to read: cross-validation must not need it
    config = Config(image_size=64, head_epochs=2, batch_size=16, fine_tune_epochs=1, fine_tune_layers=12)
    result = select_recipe.cross_validate("tiny", config, k=3, ds=ds, verbose=0)
    pooled, folds = result["pooled"], result["folds"]
    cells = {r.original for r in ds.train}
    assert len(folds) == 3 and sum(f["cells"] for f in folds) == pooled["n_originals"] == len(cells)
    assert sum(f["images"] for f in folds) == pooled["n_images"] == len(ds.train)
    # the pooled accuracy is the folds' accuracies weighted by their images, with an interval around it
    weighted = sum(f["accuracy"] * f["images"] for f in folds) / len(ds.train)
    assert pooled["accuracy"] == pytest.approx(weighted)
    assert pooled["ci_low"] <= pooled["accuracy"] <= pooled["ci_high"]
    assert sorted(c for f in folds for c in f["cells_missed"]) == sorted(pooled["cells_missed"])
    assert result["k"] == 3 and result["config"]["image_size"] == 64


def test_the_readme_quotes_the_published_cross_validation():
    result = json.loads((ROOT / "benchmarks" / "cross-validation.json").read_text())
    pooled = result["pooled"]
    readme = (ROOT / "README.md").read_text()
    assert pooled["n_originals"] == 272 and pooled["n_images"] == 9957  # every TRAIN cell, each once
    quoted = (f"{pooled['accuracy']:.1%} with the four views (95% CI {pooled['ci_low']:.1%}-{pooled['ci_high']:.1%}"
              f", resampling cells), log loss {pooled['log_loss']:.3f}")
    assert quoted in " ".join(readme.replace("**", "").split())
    right = pooled["n_originals"] - len(pooled["cells_missed"])
    assert f"{right} of {pooled['n_originals']} cells mostly right" in " ".join(readme.split())
    folds = ", ".join(f"{f['accuracy']:.1%}" for f in result["folds"][:-1]) + f" and {result['folds'][-1]['accuracy']:.1%}"
    assert folds in " ".join(readme.split())
