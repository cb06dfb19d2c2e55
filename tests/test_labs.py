"""Two labs: splitting the second lab by cell, matching colours, images of no lab, the benchmark table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hematolib import labs
from hematolib.recipe import one_lab_config
from hematolib.config import BOTH_LABS_IMAGE_SIZE, Config
from hematolib.data import ImageRecord
from tests.helpers import ROOT, load_script


def records(per_class=50):
    return [ImageRecord(Path(f"/x/{c}_{i}.jpg"), c, "PBC", f"{c}_{i}") for c in range(4) for i in range(per_class)]


def test_the_second_lab_is_split_by_cell_into_three_disjoint_stratified_parts():
    train, val, test = labs.split_cells(records(), seed=3)
    assert (len(train), len(val), len(test)) == (120, 40, 40)
    cells = [{r.original for r in part} for part in (train, val, test)]
    assert not (cells[0] & cells[1] or cells[0] & cells[2] or cells[1] & cells[2])
    assert all(sorted(np.bincount([r.label for r in part])) == [n] * 4 for part, n in zip((train, val, test), (30, 10, 10)))
    assert labs.split_cells(records(), seed=3)[2] == test and labs.split_cells(records(), seed=4)[2] != test


def test_colour_matching_moves_each_crops_mean_and_keeps_its_pattern():
    rng = np.random.default_rng(0)
    crops = rng.integers(60, 200, (3, 8, 8, 3)).astype(np.uint8)
    matched = labs.match_colour(crops, [100, 120, 140])
    np.testing.assert_allclose(matched.mean(axis=(1, 2)), [[100, 120, 140]] * 3, atol=1e-3)
    np.testing.assert_allclose(matched - matched.mean(axis=(1, 2), keepdims=True),
                               crops - crops.mean(axis=(1, 2), keepdims=True), atol=1e-3)
    np.testing.assert_allclose(labs.colour_means(crops), crops.reshape(-1, 3).mean(axis=0))
    assert labs.match_colour(np.full((1, 2, 2, 3), 250, np.uint8), [255, 255, 255]).max() <= 255


def test_standardising_gives_each_smear_the_other_labs_mean_and_spread_and_keeps_its_pattern():
    rng = np.random.default_rng(0)
    warm = np.clip(rng.normal([220, 190, 180], [40, 45, 20], (5, 30, 40, 3)), 0, 255).astype(np.uint8)
    kaggle = np.clip(rng.normal([175, 165, 170], [60, 60, 60], (7, 30, 40, 3)), 0, 255)
    mean, spread = labs.colour_spread(kaggle)
    np.testing.assert_allclose(mean, kaggle.reshape(7, -1, 3).mean(axis=1).mean(axis=0))
    moved = labs.standardise_colour(warm, mean, spread)
    assert moved.dtype == np.float32 and moved.shape == warm.shape and 0 <= moved.min() <= moved.max() <= 255
    np.testing.assert_allclose(moved.reshape(5, -1, 3).mean(axis=1), np.tile(mean, (5, 1)), atol=3)
    np.testing.assert_allclose(moved.reshape(5, -1, 3).std(axis=1), np.tile(spread, (5, 1)), rtol=0.1)
    for channel in range(3):   # the same pixels stay brighter or darker than each other
        assert np.corrcoef(warm[0, ..., channel].ravel(), moved[0, ..., channel].ravel())[0, 1] > 0.99
    flat = labs.standardise_colour(np.full((1, 4, 4, 3), 200, np.uint8), mean, spread)
    np.testing.assert_allclose(flat[0, 0, 0], mean, atol=1e-3)   # no spread to stretch: only moved


def test_images_of_no_lab_are_smear_sized_and_differ():
    foreign = labs.foreign_images(n=4, seed=1)
    assert set(foreign) == {"drawn smears", "noise", "flat colour"}
    assert all(image.shape == (240, 320, 3) and image.dtype == np.uint8 for images in foreign.values() for image in images)
    assert len({image.tobytes() for image in foreign["drawn smears"]}) == 4


def test_the_second_lab_table_shows_each_choice_on_each_set():
    second_lab = load_script("benchmarks/second_lab.py")
    score = {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n_originals": 54}
    results = {"date": "d", "machine": "m", "command": "c", "choices": [
        {"trained on": "Kaggle only", "train_seconds": 600, "scores": {"PBC test": {**score, "accuracy": 0.49}},
         "flagged_unfamiliar": {"noise": 1.0}},
        {"trained on": "Kaggle, then both labs", "train_seconds": 240, "further_epochs": 3,
         "scores": {"PBC test": {**score, "accuracy": 0.94}}, "flagged_unfamiliar": {"noise": 0.5}},
        {"trained on": "both labs", "image_size": 160, "train_seconds": 900,
         "scores": {"PBC test": {**score, "accuracy": 0.97}}, "flagged_unfamiliar": {"noise": 0.875}}]}
    table = second_lab.markdown(results)
    assert "| | Kaggle only | Kaggle, then both labs | both labs, 160 px |" in table
    assert "| PBC test (54 cells) | 49.0% (40.0%-60.0%) | 94.0% (40.0%-60.0%) | 97.0% (40.0%-60.0%) |" in table
    assert "| flagged unfamiliar: noise | 100.0% | 50.0% | 87.5% |" in table
    # a further fine-tuning's time is on top of the model it began from, and says so
    assert "| training time (2-core CPU) | 10 min | +4 min (3 epochs) | 15 min |" in table


@pytest.mark.parametrize("bad", [0.0, 1.0])
def test_a_split_fraction_outside_0_to_1_is_refused(bad):
    from hematolib.splits import split_by_original

    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_original(records(), bad)


@pytest.mark.model
def test_features_of_images_of_any_size_come_one_row_each():
    from hematolib import model as mdl

    model = mdl.build(alpha=0.35, image_size=32, weights=None, crop=True)
    images = [np.zeros((240, 320, 3), np.uint8), np.full((512, 400, 4), 200, np.uint8), np.ones((50, 60, 3), np.uint8)]
    assert labs.image_features(model, images).shape == (3, 1280)


def test_the_benchmark_trains_each_choice_as_the_kit_does():
    second_lab = load_script("benchmarks/second_lab.py")
    recipes = second_lab.recipes(Config())
    sizes = {name: recipe.image_size for name, recipe in recipes.items()}
    assert sizes == {"Kaggle only": 128, "Kaggle only, colours jittered": 128, "Kaggle, then both labs": 128,
                     "both labs": BOTH_LABS_IMAGE_SIZE}
    assert BOTH_LABS_IMAGE_SIZE != Config().image_size
    # the course's recipe plain; python -m hematolib train --labs kaggle's with the jitter, as the CLI builds it
    assert [name for name, recipe in recipes.items() if recipe.channel_jitter] == ["Kaggle only, colours jittered"]
    assert recipes["Kaggle only, colours jittered"] == one_lab_config(Config())
    assert second_lab.TWO_LABS == ("Kaggle, then both labs", "both labs")


def test_each_choice_saves_its_model_under_its_own_plain_file_name():
    second_lab = load_script("benchmarks/second_lab.py")
    names = [second_lab.saved_as(name).name for name in second_lab.recipes(Config())]
    assert names == ["Kaggle-only.keras", "Kaggle-only-colours-jittered.keras", "Kaggle-then-both-labs.keras",
                     "both-labs.keras"]


def test_the_results_name_a_model_inside_the_project_from_the_project_folder(tmp_path):
    second_lab = load_script("benchmarks/second_lab.py")
    assert second_lab.shown(ROOT / "build" / "benchmark" / "Kaggle-only.keras") == "build/benchmark/Kaggle-only.keras"
    assert second_lab.shown(tmp_path / "mine.keras") == str((tmp_path / "mine.keras").resolve())


def test_the_readme_rows_of_the_second_lab_come_from_its_figures():
    second_lab = load_script("benchmarks/second_lab.py")
    score = {"accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n_originals": 600}
    results = {"choices": [
        {"trained on": "Kaggle only", "scores": {"PBC test": {**score, "accuracy": 0.373}, "Kaggle TEST": score},
         "flagged_unfamiliar": {"PBC test": 0.98}},
        {"trained on": "both labs", "image_size": 160, "flagged_unfamiliar": {"PBC test": 0.05},
         "scores": {"PBC test": {**score, "accuracy": 0.971}, "Kaggle TEST": score}}]}
    table = second_lab.readme_table(results)
    assert "| trained on | Kaggle only | both labs, 160 px |" in table
    assert "| PBC test cells (600, never trained on) | 37.3% | 97.1% |" in table
    assert "| PBC test cells flagged as unlike the training images | 98% | 5% |" in table
    published = json.loads((ROOT / "benchmarks" / "second-lab.json").read_text()) if (
        ROOT / "benchmarks" / "second-lab.json").exists() else None
    if published is not None:  # what the README shows is what the figures say
        readme = (ROOT / "README.md").read_text()
        assert second_lab.readme_table(published) in readme
        sizes = {c["trained on"]: c["image_size"] for c in published["choices"]}
        assert sizes == {name: recipe.image_size for name, recipe in second_lab.recipes(Config()).items()}
        for doc in ("second-lab.md", "model-card.md"):
            assert second_lab.markdown(published) in (ROOT / "docs" / doc).read_text()
