"""Flagging images unlike the training cells: the distance, its calibrated threshold, storage, and
what a prediction says."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hematolib import familiar


def cells(n, seed, shift=0.0):
    """Features of one 'lab': 40 channels varying mostly along 5 directions."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(0).normal(size=(5, 40))
    return rng.normal(size=(n, 5)) * [5, 4, 3, 2, 1] @ basis + rng.normal(scale=0.1, size=(n, 40)) + shift


def test_the_threshold_flags_the_share_of_validation_cells_asked_and_foreign_ones_mostly():
    known = familiar.fit(cells(2000, 1), cells(1000, 2), components=5, quantile=0.95)
    assert known.unfamiliar(cells(1000, 2)).mean() == pytest.approx(0.05, abs=0.002)  # by construction
    assert known.unfamiliar(cells(4000, 3)).mean() == pytest.approx(0.05, abs=0.02)  # new cells, same lab
    assert known.unfamiliar(cells(1000, 4, shift=3.0)).mean() > 0.95  # another lab: shifted features
    stricter = familiar.fit(cells(2000, 1), cells(1000, 2), components=5, quantile=0.99)
    assert stricter.threshold > known.threshold and stricter.unfamiliar(cells(4000, 3)).mean() < 0.03


def test_the_distance_counts_spreads_not_raw_units():
    known = familiar.fit(cells(2000, 1), cells(500, 2), components=5)
    along_wide = known.mean + 10 * known.components[0] * np.sqrt(known.variances[0])
    along_narrow = known.mean + 10 * known.components[4] * np.sqrt(known.variances[4])
    np.testing.assert_allclose(known.distance(np.stack([along_wide, along_narrow])), [10, 10], rtol=1e-6)
    outside = np.linalg.svd(known.components)[2][-1]  # a direction the training cells hardly moved in
    assert known.distance((known.mean + outside)[None])[0] > 5  # one unit there is many spreads


def test_familiarity_round_trips_through_bytes():
    known = familiar.fit(cells(300, 1), cells(100, 2), components=4)
    again = familiar.Familiarity.from_bytes(known.to_bytes())
    np.testing.assert_array_equal(again.distance(cells(50, 5)), known.distance(cells(50, 5)))
    assert (again.threshold, again.quantile) == (known.threshold, known.quantile)


def test_a_threshold_that_cannot_be_calibrated_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1; got 1.0"):
        familiar.fit(cells(100, 1), cells(100, 2), quantile=1.0)
    with pytest.raises(familiar.TooFewToCalibrate, match="at least 10 validation images; got 3"):
        familiar.fit(cells(100, 1), cells(3, 2))
    with pytest.raises(ValueError) as wrong_quantile:
        familiar.fit(cells(100, 1), cells(100, 2), quantile=0.0)
    assert not isinstance(wrong_quantile.value, familiar.TooFewToCalibrate)  # a mistake, not too little data


def test_the_directions_are_the_principal_components_of_the_training_features():
    x = cells(500, 1)
    known = familiar.fit(x, cells(100, 2), components=5)
    _, singular, reference = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    np.testing.assert_allclose(np.abs(np.sum(known.components * reference[:5], axis=1)), 1, atol=1e-8)
    np.testing.assert_allclose(known.variances, singular[:5] ** 2 / 499, rtol=1e-8)
    assert known.residual_variance == pytest.approx((singular[5:] ** 2).sum() / 499 / 35, rel=1e-8)


def test_too_few_cells_give_a_model_no_flag_and_say_so_but_a_mistake_is_not_hidden(monkeypatch, capsys):
    from hematolib import recipe

    monkeypatch.setattr(recipe, "of_model", lambda *_: familiar.cross_fit(cells(6, 1), np.arange(6)))
    assert recipe.familiarity_of(None, [], []) is None
    assert "No unfamiliar-image flag for this model: calibrating the threshold needs at least 10 cells; got 6" \
        in capsys.readouterr().out
    monkeypatch.setattr(recipe, "of_model", lambda *_: familiar.cross_fit(cells(6, 1), np.arange(5)))
    with pytest.raises(ValueError, match="5 names for 6 images"):
        recipe.familiarity_of(None, [], [])


def copies_of_cells(n_cells, copies, seed):
    """Several near-identical images of each of `n_cells` cells, as the Kaggle TRAIN split holds, and
    each image's cell name."""
    x = np.repeat(cells(n_cells, seed), copies, axis=0)
    return x + np.random.default_rng(seed + 100).normal(scale=0.02, size=x.shape), np.repeat(np.arange(n_cells), copies)


def test_with_no_validation_cells_the_threshold_is_cross_fitted_over_whole_cells():
    x, names = copies_of_cells(60, 5, seed=1)
    new, foreign = cells(4000, 3), cells(500, 4, shift=3.0)
    refit = familiar.cross_fit(x, names, components=8)
    assert refit.unfamiliar(new).mean() == pytest.approx(0.05, abs=0.03)
    assert refit.unfamiliar(foreign).mean() > 0.95
    everything = familiar.fit(x, cells(100, 9), components=8)  # the same directions, another threshold
    for name in ("mean", "components", "variances", "residual_variance"):
        np.testing.assert_allclose(np.abs(getattr(refit, name)), np.abs(getattr(everything, name)), rtol=1e-9)
    assert refit.calibration.startswith("training cells") and everything.calibration == "validation cells"
    # what goes wrong otherwise: each image measured against copies of itself, or against itself
    by_image = familiar.cross_fit(x, np.arange(len(x)), components=8)
    in_sample = familiar.fit(x, x, components=8)
    assert by_image.unfamiliar(new).mean() > 0.15 and in_sample.unfamiliar(new).mean() > 0.3


def test_cross_fitting_refuses_what_it_cannot_group():
    x, names = copies_of_cells(12, 2, seed=1)
    with pytest.raises(ValueError, match="one cell name per image: 23 names for 24 images"):
        familiar.cross_fit(x, names[:-1])
    with pytest.raises(ValueError, match="at least 10 cells; got 3"):  # 6 images, but only 3 cells
        familiar.cross_fit(x[:6], names[:6])
    with pytest.raises(ValueError, match="at least 2 folds; got 1"):
        familiar.cross_fit(x, names, folds=1)
    with pytest.raises(ValueError, match="over 20 folds needs at least 20 cells; got 12"):
        familiar.cross_fit(x, names, folds=20)


def test_how_the_threshold_was_calibrated_is_stored_and_read_back():
    x, names = copies_of_cells(30, 3, seed=1)
    again = familiar.Familiarity.from_bytes(familiar.cross_fit(x, names, components=4).to_bytes())
    assert again.calibration == "training cells (cross-fitted, 5 folds)"
    older = np.load(io.BytesIO(again.to_bytes()))  # a file saved before calibration was stored
    buffer = io.BytesIO()
    np.savez(buffer, **{k: older[k] for k in older.files if k != "calibration"})
    assert familiar.Familiarity.from_bytes(buffer.getvalue()).calibration == "validation cells"


@pytest.mark.model
def test_a_model_with_no_validation_cells_is_calibrated_cell_by_cell(synthetic_root):
    from hematolib import cache, model as mdl
    from hematolib.data import load_dataset

    ds = load_dataset(synthetic_root)
    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    features = cache.features(model, ds.train)
    assert len({r.original for r in ds.train}) < len(ds.train)  # several images of some cells
    refit = familiar.of_model(model, ds.train, [], components=8)
    assert refit.threshold == familiar.cross_fit(features, [r.original for r in ds.train], components=8).threshold
    assert refit.threshold != familiar.cross_fit(features, [str(r.path) for r in ds.train], components=8).threshold


@pytest.mark.model
def test_a_prediction_says_when_an_image_is_unfamiliar(tmp_path, synthetic_root, weights_dir, monkeypatch):
    """Stored with the model, read back by the predictor, flagged in the prediction's notes. ImageNet
    weights: with random ones the distances say nothing, and noise can fall inside the threshold."""
    from hematolib import cache, inference, model as mdl, model_file, recipe
    from hematolib.data import load_dataset
    from hematolib.images import read_image

    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    ds = load_dataset(synthetic_root)
    model = mdl.build(alpha=0.35, image_size=64, crop=True)
    known = familiar.fit(cache.features(model, ds.train), cache.features(model, ds.test), components=8)
    info = model_file.ModelInfo(class_names=list(mdl.CLASS_NAMES), image_size=64, alpha=0.35, crop=True,
                                metrics={"VALIDATION": {"accuracy": 0.5, "cells": "x"}})
    path = tmp_path / "m.keras"
    assert recipe.save_if_better(model, path, info, familiarity=known)[0]
    predictor = inference.Predictor.from_file(path)
    assert predictor.familiarity.threshold == known.threshold
    typical = ds.test[int(np.argsort(known.distance(cache.features(model, ds.test)))[len(ds.test) // 2])]
    cell = predictor.predict_array(read_image(typical.path)[0], "cell.png")  # half the calibration cells lie farther
    noise = predictor.predict_array(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8),
                                    "noise.png")
    assert not cell.unfamiliar and not any("unlike the cells" in n for n in cell.notes)
    assert noise.unfamiliar and any("noise.png: unlike the cells this model was trained on" in n for n in noise.notes)
    assert noise.to_dict()["unfamiliar"] is True
    plain = inference.Predictor(model)  # no familiarity stored: nothing is flagged
    assert not plain.predict_array(np.zeros((240, 320, 3), np.uint8)).unfamiliar
