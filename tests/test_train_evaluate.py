"""Training the head on cached features, fine-tuning, and the honest evaluation numbers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hematolib import cache, evaluate, familiar, inference, model as mdl, model_file, train
from hematolib.config import Config
from hematolib.data import load_dataset
from hematolib.pipelines import make_pipeline
from hematolib.splits import split_by_original

pytestmark = pytest.mark.model

SMALL = Config(alpha=0.35, image_size=64, head_epochs=3, batch_size=16, fine_tune_epochs=1,
               fine_tune_layers=12)


# --- evaluation numbers ------------------------------------------------------------------------

def test_bootstrap_over_cells_is_wider_than_over_images():
    # 20 cells of 50 images each; a cell is either all right or all wrong: 50% accuracy
    correct = np.repeat(np.arange(20) % 2 == 0, 50)
    by_cell = evaluate.bootstrap_accuracy(correct, np.repeat(np.arange(20), 50), seed=1)
    by_image = evaluate.bootstrap_accuracy(correct, np.arange(1000), seed=1)
    assert by_cell[0] < 0.35 and by_cell[1] > 0.65
    assert by_image[1] - by_image[0] < 0.1
    assert evaluate.bootstrap_accuracy(np.ones(30, bool), np.arange(30) // 3) == (1.0, 1.0)


def test_the_gap_between_two_labs_resamples_each_labs_cells():
    home = np.repeat(np.arange(40) % 10 != 0, 5)   # 40 cells of 5 images, 90% right
    away = np.arange(60) % 2 == 0                  # 60 cells of one image, 50% right
    gap, low, high = evaluate.bootstrap_gap(home, np.repeat(np.arange(40), 5), away, np.arange(60), seed=3)
    assert gap == pytest.approx(0.4) and low < gap < high
    assert 0.2 < low < 0.35 and 0.45 < high < 0.6   # cells: about 40 + 60 independent answers
    same = evaluate.bootstrap_gap(away, np.arange(60), away, np.arange(60), seed=3)
    assert same[0] == 0 and same[1] < 0 < same[2]
    by_images = evaluate.bootstrap_gap(home, np.arange(200), away, np.arange(60), seed=3)
    assert by_images[2] - by_images[1] < high - low   # treating copies as cells narrows it wrongly


def test_evaluate_matches_hand_computed_metrics():
    labels = np.array([0, 0, 1, 1, 2, 3])
    pred = np.array([0, 1, 1, 1, 2, 0])
    probs = np.eye(4)[pred] * 0.7 + 0.075
    report = evaluate.evaluate(probs, labels, np.array(list("aabbcd")), split="TEST", n_boot=200)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.confusion[0] == [1, 1, 0, 0] and report.confusion[3] == [1, 0, 0, 0]
    assert report.per_class["LYMPHOCYTE"]["precision"] == pytest.approx(2 / 3)
    assert report.per_class["EOSINOPHIL"]["recall"] == pytest.approx(0.5)
    assert report.per_class["NEUTROPHIL"]["recall"] == 0.0
    assert report.cells_missed == ["a", "d"]  # a: one of its two images right, which is not most
    assert report.n_originals == 4 and report.per_original_accuracy == pytest.approx(2 / 4)
    assert "over 4 original cells, 6 images" in report.summary()
    # the true class had 0.775 on the four right images and 0.075 on the two wrong ones
    assert report.log_loss == pytest.approx(-(4 * np.log(0.775) + 2 * np.log(0.075)) / 6)
    assert report.ece == pytest.approx(0.775 - 4 / 6)  # always 77.5% sure, right on 66.7%
    assert "log loss 1.03, calibration error 10.8%" in report.summary()


def test_results_with_reports_are_written_as_json(tmp_path):
    from hematolib.files import write_json_atomic

    report = evaluate.evaluate(np.eye(4)[[0, 1, 2, 3]], np.arange(4), np.arange(4), "TEST", n_boot=10)
    write_json_atomic(tmp_path / "results.json", {"TEST": report, "robustness": {"none": np.float32(0.5)}})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == {"TEST": json.loads(json.dumps(report.to_dict())), "robustness": {"none": 0.5}}


def test_calibration_measures_overconfidence():
    labels = np.array([0, 1] * 50)
    confident = np.tile([0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3], (100, 1))  # always says class 0 at 90%
    cal = evaluate.calibration(confident, labels)
    assert cal["ece"] == pytest.approx(0.4)
    perfect = np.eye(4)[labels]
    assert evaluate.calibration(perfect, labels)["ece"] == pytest.approx(0.0)


def test_mistakes_are_sorted_by_confidence(synthetic_root):
    recs = load_dataset(synthetic_root).test[:3]
    probs = np.array([[0.1, 0.9, 0, 0], [0.6, 0.4, 0, 0], [0.2, 0.7, 0.1, 0]])
    labels = [r.label for r in recs]
    out = evaluate.mistakes(probs, recs)
    assert [m[2] for m in out] == sorted((probs[i].max() for i in range(3) if probs[i].argmax() != labels[i]),
                                         reverse=True)
    from hematolib import plots

    titles = [ax.get_title() for ax in plots.mistakes(out).axes if ax.get_title()]
    assert out and len(titles) == len(out)  # each names its file and the cell it shows, as missed_cell_names does
    assert all(rec.path.name in t and rec.original in t for t, (rec, _, _) in zip(titles, out))


def test_missed_cell_details_name_their_size_and_what_they_were_called(synthetic_root, tmp_path):
    from dataclasses import replace as with_

    from PIL import Image

    from tests.helpers import smear_with_nucleus

    whole, cut_off = tmp_path / "whole.png", tmp_path / "cut-off.png"
    Image.fromarray(smear_with_nucleus(120, 160, radius=30)).save(whole)
    Image.fromarray(smear_with_nucleus(0, 0, radius=30)).save(cut_off)  # a quarter of the nucleus in frame
    recs = [with_(r, path=whole) for r in load_dataset(synthetic_root).test[:7]]
    recs = ([with_(r, original="big", label=2) for r in recs[:4]] + [with_(r, original="half", label=0) for r in recs[4:6]]
            + [with_(recs[6], original="fine", label=1)])
    recs[1] = with_(recs[1], path=cut_off)
    pred = [3, 3, 3, 2, 0, 1, 1]  # big: 1 of 4 right; half: 1 of 2 (not most); fine: right
    out = evaluate.missed_cell_details(np.eye(4)[pred], recs)
    assert out == [{"cell": "big", "true": "MONOCYTE", "images": 4, "right": 1, "called": "NEUTROPHIL", "little_stain": 1},
                   {"cell": "half", "true": "EOSINOPHIL", "images": 2, "right": 1, "called": "LYMPHOCYTE",
                    "little_stain": 0}]
    from hematolib import plots

    fig = plots.missed_cell_images(out, recs, per_cell=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 * 4  # a row per missed cell: two images, each beside its crop
    assert "big\nMonocyte -> Neutrophil, 1/4 right" in titles and "half\nEosinophil -> Lymphocyte, 1/2 right" in titles
    assert titles.count("cut-off.png\nlittle stain: cut off?") == 1  # big shows its first and last image by name
    assert titles.count("whole.png") == 3
    report = evaluate.evaluate(np.eye(4)[pred], np.array([r.label for r in recs]), np.array([r.original for r in recs]))
    assert sorted(report.cells_missed) == sorted(m["cell"] for m in out)  # one definition of a missed cell


# --- training ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_split(synthetic_root):
    ds = load_dataset(synthetic_root)
    return split_by_original(ds.train, 0.34, seed=0), ds


def test_features_are_cached_and_reused(synthetic_split, monkeypatch):
    (tr, _), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    first = cache.features(model, tr[:40])
    assert cache.feature_store_path(model).exists()
    more = cache.features(model, tr[20:60])  # 20 known, 20 new images
    np.testing.assert_array_equal(more[:20], first[20:40])
    fresh = cache.features(model, tr[:5], cache=False)
    np.testing.assert_allclose(fresh, first[:5], rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(cache, "features_of", lambda m: pytest.fail("features were recomputed"))
    again = cache.features(model, list(reversed(tr[:60])))
    np.testing.assert_array_equal(again[::-1][:40], first)
    assert first.shape == (40, 1280)


def test_same_seed_gives_the_same_head_weights(synthetic_split):
    (tr, va), _ = synthetic_split
    weights = []
    for _ in range(2):
        train.set_seed(0)
        model = mdl.build(alpha=0.35, image_size=64, weights=None)
        hist = train.fit_head(model, tr, va, SMALL, verbose=0)
        weights.append(mdl.head_of(model).layers[-1].kernel.numpy())
    assert hist.epochs >= 1 and set(hist.metrics) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    np.testing.assert_array_equal(weights[0], weights[1])


def test_fine_tune_changes_the_top_only_and_keeps_batchnorm_statistics(synthetic_split):
    (tr, va), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    base = mdl.base_of(model)
    before = {l.name: [w.numpy().copy() for w in l.weights] for l in base.layers if l.weights}
    hist = train.fine_tune(model, tr[:32], va[:16], SMALL, verbose=0)
    assert hist.stage == "fine_tune" and hist.epochs == 1
    changed = {n for n, ws in before.items()
               if any(not np.array_equal(w, v.numpy()) for w, v in zip(ws, base.get_layer(n).weights))}
    top = {l.name for l in base.layers[-12:] if l.weights}
    assert changed and changed <= top
    assert not any("bn" in n.lower() for n in changed)


def test_features_cached_before_fine_tuning_are_not_read_back_after_it(synthetic_split):
    (tr, va), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    before = cache.feature_store_path(model)
    train.fine_tune(model, tr[:32], va[:16], SMALL, verbose=0)  # the top 12 layers: not the first or last weights
    assert cache.feature_store_path(model) != before


def test_features_of_crops_made_with_other_locator_settings_are_not_read_back(synthetic_split, monkeypatch):
    from hematolib import locate

    (tr, _), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    first = cache.features(model, tr[:8])
    monkeypatch.setattr(locate, "MIN_BOX", 1.0)  # every crop becomes the whole height of the smear
    monkeypatch.setattr(locate, "BOX_PER_NUCLEUS", 0.0)
    second = cache.features(model, tr[:8])
    assert not np.allclose(second, first, rtol=1e-2, atol=0)
    np.testing.assert_allclose(cache.features(model, tr[:8], cache=False), second, rtol=1e-3, atol=0)


def test_crops_are_stored_once_and_equal_what_the_model_sees(synthetic_split, monkeypatch):
    (tr, _), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    cells = cache.crops(tr[:12], 64)
    assert cells.dtype == np.uint8 and cells.shape == (12, 64, 64, 3)
    assert cache.crop_store_path(64).exists()
    smears = np.concatenate([x.numpy() for x, _ in make_pipeline(tr[:12], mdl.input_size(model), cache=False)])
    live = np.asarray(mdl.network_view(model, smears))
    np.testing.assert_array_equal(live, cells)  # the layer rounds: training sees what inference sees
    # crops depend on the locator only, not on any model: they are read back
    monkeypatch.setattr(cache, "make_pipeline", lambda *a, **k: pytest.fail("crops were recomputed"))
    np.testing.assert_array_equal(cache.crops(list(reversed(tr[:12])), 64), cells[::-1])


def test_a_damaged_cache_file_is_reported_and_rebuilt(synthetic_split):
    (tr, _), _ = synthetic_split
    good = cache.crops(tr[:6], 64)
    cache.crop_store_path(64).write_bytes(b"PK\x03\x04 half a zip")  # a crash mid-copy, a bad disk
    with pytest.warns(UserWarning, match="cache file is damaged.*computing it again"):
        again = cache.crops(tr[:6], 64)
    np.testing.assert_array_equal(again, good)
    with np.load(cache.crop_store_path(64)) as store:  # rewritten whole
        assert len(store["keys"]) == 6


def _files(folder, n):
    """n image records whose files exist (the stores key rows by path, size and mtime)."""
    from hematolib.data import ImageRecord

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.jpeg").write_bytes(b"%d" % i)
    return [ImageRecord(folder / f"{i}.jpeg", 0, "TRAIN", f"TRAIN/EOSINOPHIL/{i}") for i in range(n)]


def test_a_few_rows_of_a_large_store_are_read_without_loading_it(tmp_path):
    import tracemalloc

    records = _files(tmp_path / "smears", 400)
    rows = np.arange(400, dtype=np.uint8)[:, None, None, None] * np.ones((1, 160, 160, 3), np.uint8)  # 30 MB
    path = tmp_path / "store.npz"
    cache._stored(path, records, lambda recs: rows[[int(r.path.stem) for r in recs]], cache=True)
    some = [records[i] for i in (399, 3, 200)]
    tracemalloc.start()
    got = cache._stored(path, some, lambda recs: pytest.fail("stored rows were recomputed"), cache=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(got, rows[[399, 3, 200]])
    assert type(got) is np.ndarray  # a copy: the store's file is not held open
    assert peak < 3 * rows[0].nbytes + 2_000_000, f"{peak / 1e6:.0f} MB allocated to read 3 rows of 30 MB"
    # adding rows rewrites the store with old and new ones
    more = _files(tmp_path / "more", 2)
    both = cache._stored(path, [records[5], *more], lambda recs: np.full((len(recs), 160, 160, 3), 7, np.uint8),
                         cache=True)
    assert (both[0] == 5).all() and (both[1:] == 7).all()
    with np.load(path) as store:
        assert len(store["keys"]) == 402


def test_rows_of_changed_or_deleted_images_leave_the_store(tmp_path):
    import os

    records = _files(tmp_path / "smears", 4)
    path = tmp_path / "store.npz"
    cache._stored(path, records, lambda recs: np.zeros((len(recs), 2), np.float32), cache=True)
    records[0].path.unlink()  # gone
    stat = records[1].path.stat()
    os.utime(records[1].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # unpacked again: new mtime
    got = cache._stored(path, records[1:], lambda recs: np.ones((len(recs), 2), np.float32), cache=True)
    np.testing.assert_array_equal(got, [[1, 1], [0, 0], [0, 0]])  # only the changed image was computed
    with np.load(path) as store:
        assert sorted(k.split("|")[0] for k in store["keys"]) == sorted(str(r.path.resolve()) for r in records[1:])
        assert len(store["values"]) == 3


def test_a_compressed_or_older_store_is_still_read(tmp_path):
    records = _files(tmp_path / "smears", 3)
    keys = np.array([cache._file_key(r.path) for r in records])
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "features.npz"
    np.savez_compressed(path, keys=keys, features=values)  # an earlier kit's name for the rows
    got = cache._stored(path, records[::-1], lambda recs: pytest.fail("recomputed"), cache=True)
    np.testing.assert_array_equal(got, values[::-1])


def test_a_store_shorter_than_its_header_is_reported_and_rebuilt(tmp_path):
    records = _files(tmp_path / "smears", 3)
    path = tmp_path / "crops.npz"
    cache._stored(path, records, lambda recs: np.ones((len(recs), 64), np.float32), cache=True)
    keys = np.array([cache._file_key(r.path) for r in records])
    with open(path, "wb") as fh:  # a zip whose values member claims more rows than it holds
        np.savez(fh, keys=keys, values=np.ones((3, 64), np.float32))
    data = bytearray(path.read_bytes())
    header = data.find(b"'shape': (3, 64)")
    data[header:header + 16] = b"'shape': (9, 64)"
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="cache file is damaged.*computing it again"):
        got = cache._stored(path, records, lambda recs: np.full((len(recs), 64), 2, np.float32), cache=True)
    assert (got == 2).all()


def test_an_interrupted_cache_write_keeps_the_previous_store(synthetic_split, monkeypatch, tmp_path):
    (tr, _), _ = synthetic_split
    monkeypatch.setenv("HEMATO_CACHE", str(tmp_path))  # a folder of its own, to see what is left in it
    cache.crops(tr[:4], 64)
    path = cache.crop_store_path(64)
    before = path.read_bytes()

    def crash(fh, **arrays):
        fh.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.crops(tr[:8], 64)  # 4 new images: the store is rewritten
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_fine_tuning_a_cropping_model_trains_it_on_stored_crops(synthetic_split, monkeypatch):
    (tr, va), _ = synthetic_split
    model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
    cache.crops(tr[:32] + va[:16], 64)
    before = mdl.head_of(model).layers[-1].kernel.numpy().copy()
    monkeypatch.setattr(cache, "make_pipeline", lambda *a, **k: pytest.fail("smears were decoded again"))
    monkeypatch.setattr(train, "make_pipeline", lambda *a, **k: pytest.fail("smears were decoded again"))
    train.fine_tune(model, tr[:32], va[:16], SMALL, verbose=0)
    assert not np.array_equal(before, mdl.head_of(model).layers[-1].kernel.numpy())
    # the whole model (crop layer first) and the network on stored crops agree after training
    cells = cache.crops(va[:8], 64).astype(np.float32)
    monkeypatch.undo()
    smears = np.concatenate([x.numpy() for x, _ in make_pipeline(va[:8], mdl.input_size(model), cache=False)])
    np.testing.assert_allclose(model.predict(smears, verbose=0), mdl.network_of(model).predict(cells, verbose=0),
                               atol=1e-5)


def test_augmented_fine_tuning_repeats_exactly_with_the_same_seed(synthetic_split):
    import keras

    from hematolib import augment

    (tr, _), _ = synthetic_split
    seen = []

    class Seen(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            seen.append(self.model.get_weights())

    def tuned(augmenter):
        train.set_seed(0)
        model = mdl.build(alpha=0.35, image_size=64, weights=None, crop=True)
        train.fine_tune(model, tr[:32], [], SMALL, augment=augmenter, verbose=0,
                        callbacks=[Seen()])
        return mdl.network_of(model).get_weights()

    from hematolib.pipelines import array_pipeline

    pipeline = array_pipeline(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int32), shuffle=True)
    assert pipeline.options().autotune.enabled is False  # see pipelines.finish_pipeline
    first, again = tuned(augment.make_augmenter(seed=3)), tuned(augment.make_augmenter(seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    unaugmented = tuned(None)
    assert not all(np.array_equal(a, b) for a, b in zip(first, unaugmented))  # the augmentation took part
    # callbacks see the network's weights, in its order, not the augmentation's state
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], first)) and len(seen[0]) == len(first)


def rate_recorder(hook: str):
    """A Keras callback whose `rates` list gets the optimizer's learning rate at every `hook`
    ("on_epoch_end", "on_train_batch_begin", ...)."""
    import keras

    class Rates(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates = []

    def record(self, *args, **kwargs):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    setattr(Rates, hook, record)
    return Rates()


def test_the_cosine_schedule_runs_every_epoch_to_a_zero_rate_without_validation(synthetic_split):
    (tr, va), _ = synthetic_split
    recorder = rate_recorder("on_epoch_end")
    config = replace(SMALL, fine_tune_epochs=3, warmup_epochs=0)
    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    hist = train.fine_tune(model, tr[:32], [], config, verbose=0, callbacks=[recorder])
    rates = recorder.rates
    assert hist.epochs == 3 and "val_loss" not in hist.metrics  # nothing stopped it early
    assert rates[0] == pytest.approx(0.75e-4, rel=0.05) and rates[1] == pytest.approx(0.25e-4, rel=0.05)
    assert rates[2] == pytest.approx(0.0, abs=1e-9)


def test_a_warm_up_raises_the_rate_from_zero_before_the_cosine_decay(synthetic_split):
    (tr, _), _ = synthetic_split
    recorder = rate_recorder("on_train_batch_begin")
    # 32 images in batches of 16: 2 steps an epoch, 6 in all, the first 2 warming up
    config = replace(SMALL, fine_tune_epochs=3, warmup_epochs=1.0)
    train.fine_tune(mdl.build(alpha=0.35, image_size=64, weights=None), tr[:32], [], config, verbose=0,
                    callbacks=[recorder])
    rates = recorder.rates
    peak = config.fine_tune_learning_rate
    expected = [0.0, peak / 2] + [peak * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)]
    np.testing.assert_allclose(rates, expected, atol=peak * 1e-3)
    # a warm-up as long as the run would never reach the peak: it takes half the steps at most
    short = replace(config, fine_tune_epochs=1, warmup_epochs=1.0)
    assert [float(train.fine_tune_schedule(short, 64)(step)) for step in range(5)] == pytest.approx(
        [0.0, peak / 2, peak, peak / 2, 0.0], abs=peak * 1e-3)


def test_a_config_that_cannot_train_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="label_smoothing must be at least 0 and below 1, got 1.0"):
        Config(label_smoothing=1.0)
    with pytest.raises(ValueError, match="below 1"):
        Config(val_fraction=1.0)
    with pytest.raises(ValueError, match="warmup_epochs must be at least 0, got -1"):
        Config(warmup_epochs=-1)


def test_a_refit_trains_on_every_train_cell(synthetic_root):
    from hematolib import recipe

    ds = load_dataset(synthetic_root)
    everything = recipe.refit_config(Config(image_size=96))
    assert everything.image_size == 96 and everything.val_fraction == 0
    train_records, val = recipe.split(ds, everything)
    assert val == [] and sorted(r.path for r in train_records) == sorted(r.path for r in ds.train)
    held_in, held_out = recipe.split(ds, Config())
    assert held_out and len(held_in) + len(held_out) == len(ds.train)
    # the held-out run's validation, saved with the refit model, says where it comes from
    held_out_report = evaluate.evaluate(np.eye(4)[[0, 1, 2, 3]], np.arange(4), np.arange(4), "VALIDATION", n_boot=10)
    refit_info = recipe.model_info(everything, ds, train_records, {"VALIDATION": held_out_report})
    assert "held out" in refit_info.metrics["VALIDATION"]["estimated_by"]
    assert "estimated_by" not in recipe.model_info(Config(), ds, held_in, {"VALIDATION": held_out_report}
                                                   ).metrics["VALIDATION"]


def test_a_saved_model_records_the_augmentation_it_was_fine_tuned_through(synthetic_root, tmp_path, monkeypatch):
    from hematolib import augment, recipe

    ds = load_dataset(synthetic_root)
    cells, _ = recipe.split(ds, Config())
    plain = recipe.model_info(Config(), ds, cells, {}).augmentation
    assert plain["RandomRotation"]["factor"] == pytest.approx([-20 / 360, 20 / 360])
    assert plain["RandomZoom"]["height_factor"] == 0.15 and plain["RandomHue"]["seed"] == 42
    assert "ChannelJitter" not in plain and "name" not in plain["RandomFlip"]
    monkeypatch.setattr(augment, "CHANNEL_GAIN", 0.1)  # read off the layer trained through, not restated
    jittered = recipe.model_info(Config(channel_jitter=True, seed=7), ds, cells, {})
    assert jittered.augmentation["ChannelJitter"] == {"gain": 0.1, "shift": augment.CHANNEL_SHIFT, "seed": 7}
    # no fine-tuning, no augmentation
    assert recipe.model_info(Config(), ds, cells, {}, fine_tuned=False).augmentation == {}
    assert recipe.model_info(Config(fine_tune_epochs=0), ds, cells, {}).augmentation == {}
    # notebook 06's further fine-tuning, and what its two-lab model records of it: never the jitter
    further = augment.describe(recipe.further_augmenter(Config(channel_jitter=True, seed=7)))
    assert "ChannelJitter" not in further and further["RandomFlip"]["seed"] == 7
    two_labs = recipe.further_info(Config(channel_jitter=True, seed=7), ds, cells, {}, epochs=3)
    assert two_labs.augmentation == further and two_labs.further_training.endswith("(epochs: 3)")
    assert any("CC BY 4.0" in credit for credit in two_labs.credits) and len(two_labs.credits) == 2
    # it travels with the model file's readable metadata, and older files without it still load
    sidecar = tmp_path / "m.json"
    sidecar.write_text(json.dumps(jittered.__dict__))
    assert model_file.ModelInfo.from_dict(json.loads(sidecar.read_text()), "m").augmentation == jittered.augmentation
    older = {k: v for k, v in jittered.__dict__.items() if k != "augmentation"}
    assert model_file.ModelInfo.from_dict(older, "old").augmentation == {}

@pytest.mark.real_data
def test_head_on_imagenet_features_learns_the_synthetic_cells(synthetic_split, weights_dir, monkeypatch):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    (tr, va), ds = synthetic_split
    config = Config(alpha=0.35, image_size=96, head_epochs=40, batch_size=16)
    model = mdl.build(alpha=0.35, image_size=96)
    train.fit_head(model, tr, va, config, verbose=0)
    report, _ = inference.evaluate_records(model, ds.test, "TEST")
    assert report.accuracy >= 0.75, report.summary()


def test_save_if_better_never_silently_replaces_a_better_model(tmp_path):
    from hematolib import recipe

    model = mdl.build(alpha=0.35, image_size=64, weights=None)

    def info(acc, cells="cells-a"):
        return model_file.ModelInfo(class_names=list(evaluate.CLASS_NAMES), image_size=64, alpha=0.35,
                                    metrics={"VALIDATION": {"accuracy": acc, "cells": cells}})

    path = tmp_path / "best.keras"
    assert recipe.save_if_better(model, path, info(0.8))[0]
    saved, message = recipe.save_if_better(model, path, info(0.6))
    assert not saved and "Kept the existing best.keras" in message and "80.0%" in message
    assert model_file.read_info(path).metrics["VALIDATION"]["accuracy"] == 0.8
    assert recipe.save_if_better(model, path, info(0.9))[0]
    assert model_file.read_info(path).metrics["VALIDATION"]["accuracy"] == 0.9
    assert not (tmp_path / "best.previous.keras").exists()


def test_a_model_scored_on_other_cells_is_replaced_and_kept_aside(tmp_path):
    """An older kit's model validated leakily at 99.9% must not block this run's honest 86%."""
    from hematolib import recipe

    model = mdl.build(alpha=0.35, image_size=64, weights=None)

    def info(acc, **cells):
        return model_file.ModelInfo(class_names=list(evaluate.CLASS_NAMES), image_size=64, alpha=0.35,
                                    metrics={"VALIDATION": {"accuracy": acc, **cells}})

    path = tmp_path / "best.keras"
    recipe.save_if_better(model, path, info(0.999))  # an older kit's report: no cells recorded
    saved, message = recipe.save_if_better(model, path, info(0.86, cells="honest"))
    assert saved and "scored on other cells (validation accuracy 99.9%)" in message and "best.previous.keras" in message
    assert model_file.read_info(path).metrics["VALIDATION"] == {"accuracy": 0.86, "cells": "honest"}
    assert model_file.read_info(tmp_path / "best.previous.keras").metrics["VALIDATION"]["accuracy"] == 0.999
    sidecars = {name: json.loads((tmp_path / name).read_text()) for name in ("best.json", "best.previous.json")}
    assert sidecars["best.previous.json"]["metrics"]["VALIDATION"]["accuracy"] == 0.999  # moved with its model
    assert sidecars["best.json"]["metrics"]["VALIDATION"]["accuracy"] == 0.86


def test_a_two_lab_model_is_kept_or_replaced_by_both_labs_validation(tmp_path):
    """Notebook 06: a model better on the Kaggle cells but worse on the two labs together is replaced;
    one better on the two together is kept; one that cannot be compared is kept aside, not lost."""
    from hematolib import recipe

    model = mdl.build(alpha=0.35, image_size=64, weights=None)
    both = ("VALIDATION", "SECOND_LAB_VALIDATION")

    def info(kaggle=None, pbc=None):
        metrics = {name: {"accuracy": acc, "cells": name} for name, acc in zip(both, (kaggle, pbc)) if acc is not None}
        return model_file.ModelInfo(class_names=list(evaluate.CLASS_NAMES), image_size=64, alpha=0.35,
                                    metrics=metrics)

    path = tmp_path / "two.keras"
    assert recipe.save_if_better(model, path, info(0.92, 0.80), metric=both)[0]
    saved, message = recipe.save_if_better(model, path, info(0.90, 0.94), metric=both)  # mean 92% beats 86%
    assert saved and "mean validation accuracy 92.0%" in message
    saved, message = recipe.save_if_better(model, path, info(0.93, 0.85), metric=both)  # 89% against 92%
    assert not saved and "its mean validation accuracy 92.0% beats this run's 89.0%" in message
    assert model_file.read_info(path).metrics["SECOND_LAB_VALIDATION"]["accuracy"] == 0.94

    model_file.save(model, path, info(kaggle=0.99))  # `train --holdout` on both labs: the Kaggle cells only
    saved, message = recipe.save_if_better(model, path, info(0.5, 0.5), metric=both)
    assert saved and "has no SECOND_LAB_VALIDATION accuracy to compare; it is now two.previous.keras" in message
    assert model_file.read_info(tmp_path / "two.previous.keras").metrics["VALIDATION"]["accuracy"] == 0.99

    older = info(0.99, 0.99)
    older.format_version = model_file.FORMAT_VERSION - 1  # same cells, higher, but this kit cannot load it
    model_file.save(model, path, older)
    saved, message = recipe.save_if_better(model, path, info(0.5, 0.5), metric=both)
    assert saved and "was saved by an older kit" in message

    path.write_bytes(b"not a model")
    saved, message = recipe.save_if_better(model, path, info(0.5, 0.5), metric=both)
    assert saved and "was not a readable model" in message
    assert model_file.load(path)[1].metrics == info(0.5, 0.5).metrics


def test_reports_name_the_cells_they_scored():
    probs, labels = np.eye(4)[[0, 1, 2, 3]], np.array([0, 1, 2, 3])
    a = evaluate.evaluate(probs, labels, np.array(list("abcd")), n_boot=10)
    assert a.cells == evaluate.evaluate(probs[::-1], labels[::-1], np.array(list("dcba")), n_boot=10).cells
    assert a.cells != evaluate.evaluate(probs, labels, np.array(list("abce")), n_boot=10).cells


def test_keep_better_falls_back_to_the_saved_head_model_when_fine_tuning_hurt(tmp_path):
    from hematolib import recipe

    def report(acc):
        labels = np.array([0, 1, 2, 3] * 5)
        pred = np.where(np.arange(20) < round(acc * 20), labels, (labels + 1) % 4)
        return evaluate.evaluate(np.eye(4)[pred], labels, np.arange(20), "VALIDATION", n_boot=10)

    train.set_seed(1)
    head = mdl.build(alpha=0.35, image_size=64, weights=None)
    info = model_file.ModelInfo(class_names=list(evaluate.CLASS_NAMES), image_size=64, alpha=0.35)
    model_file.save(head, tmp_path / "head.keras", info)
    train.set_seed(2)
    tuned = mdl.build(alpha=0.35, image_size=64, weights=None)
    kept, rep, message = recipe.keep_better(tuned, report(0.9), tmp_path / "head.keras", report(0.8))
    assert kept is tuned and rep.accuracy == 0.9 and "fine-tuned" in message
    kept, rep, message = recipe.keep_better(tuned, report(0.7), tmp_path / "head.keras", report(0.8))
    assert kept is not tuned and rep.accuracy == 0.8 and "did not help" in message
    np.testing.assert_array_equal(mdl.head_of(kept).layers[-1].kernel.numpy(),
                                  mdl.head_of(head).layers[-1].kernel.numpy())


@pytest.mark.real_data
def test_the_recipe_times_its_stages_and_fine_tunes_with_augmentation(synthetic_root, weights_dir,
                                                                      monkeypatch, tmp_path):
    from hematolib import recipe

    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    seen = {}
    real_fine_tune = recipe.fine_tune

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_fine_tune(*args, **kwargs)

    monkeypatch.setattr(recipe, "fine_tune", spy)
    config = Config(image_size=64, per_class=8, head_epochs=2, fine_tune_epochs=1, batch_size=8)
    result = recipe.run(load_dataset(synthetic_root), config, out=tmp_path / "m.keras", verbose=0)
    assert set(result.seconds) == {"feature extraction", "head", "fine-tuning"}
    assert all(v > 0 for v in result.seconds.values())
    assert seen["augment"] is not None and seen["augment"].name == "augment"
    assert model_file.read_info(result.path).crop and set(result.reports) == {"VALIDATION", "TEST", "TEST_SIMPLE"}
    # the refit: every TRAIN cell, a fixed schedule, no validation report
    refit = recipe.run(load_dataset(synthetic_root), recipe.refit_config(config), out=tmp_path / "refit.keras",
                       verbose=0)
    assert set(refit.reports) == {"TEST", "TEST_SIMPLE"} and refit.histories[-1].epochs == 1
    assert model_file.read_info(refit.path).config["val_fraction"] == 0.0
    assert np.isfinite(familiar.read(refit.path).threshold)  # calibrated on its own training cells, cross-fitted
    # the notebook's refit: no TEST, and the held-out run's choice (here: head only) is repeated
    monkeypatch.setattr(recipe, "fine_tune", lambda *a, **k: pytest.fail("the head-only choice was fine-tuned"))
    final, info, familiarity = recipe.refit(load_dataset(synthetic_root), config, result.reports["VALIDATION"],
                                            fine_tuned=False, verbose=0)
    assert np.isfinite(familiarity.threshold)
    assert info.config["fine_tune_epochs"] == 0 and info.config["val_fraction"] == 0.0
    assert info.metrics["VALIDATION"]["accuracy"] == result.reports["VALIDATION"].accuracy
    assert set(info.metrics) == {"VALIDATION"} and final.predict(np.zeros((1, *final.input_shape[1:])),
                                                                 verbose=0).shape == (1, 4)


def test_a_model_trained_because_none_was_saved_never_reads_test(synthetic_root, monkeypatch, tmp_path):
    from hematolib import recipe

    scored = []
    real = recipe.evaluate_records
    monkeypatch.setattr(recipe, "evaluate_records", lambda m, recs, split, **kw: scored.append(split) or real(m, recs, split))
    quick = Config(image_size=32, per_class=8, head_epochs=1, fine_tune_epochs=0, batch_size=8)
    monkeypatch.setattr(mdl, "resolve_weights", lambda alpha: None)
    model, info = recipe.load_or_train(tmp_path / "m.keras", load_dataset(synthetic_root), quick)
    assert scored == ["VALIDATION"] and set(info.metrics) == {"VALIDATION"}
    assert (tmp_path / "m.keras").exists() and mdl.is_cropping(model)


def test_the_recipe_jitters_colour_channels_when_its_config_says_so(monkeypatch):
    from hematolib import recipe

    layers_seen = []
    monkeypatch.setattr(mdl, "build", lambda **kwargs: "model")
    monkeypatch.setattr(cache, "features", lambda model, records: None)
    monkeypatch.setattr(recipe, "fit_head", lambda *args, **kwargs: "head")
    monkeypatch.setattr(recipe, "fine_tune", lambda model, train, val, config, augment, **kwargs:
                        layers_seen.append([type(layer).__name__ for layer in augment.layers]))
    for jitter in (False, True):
        config = Config(fine_tune_epochs=1, channel_jitter=jitter)
        recipe.fit([], [], config, verbose=0)
        recipe.fine_tune_further("model", [], config, epochs=1, verbose=0)
    # fine-tuning further on both labs never jitters: that path lost the first lab's cells
    assert ["ChannelJitter" in names for names in layers_seen] == [False, False, True, False]
    assert recipe.one_lab_config(Config()).channel_jitter and not recipe.both_labs_config(Config()).channel_jitter
