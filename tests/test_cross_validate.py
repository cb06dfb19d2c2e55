"""The cross-validation script: every cell scored once, finished folds kept, and a run that resumes."""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np
import pytest

from hematolib.config import Config
from hematolib.data import groups_of, labels_of, load_dataset
from tests.helpers import load_script


@pytest.fixture(scope="module")
def cv():
    return load_script("benchmarks/cross_validate.py")


@pytest.fixture(scope="module")
def ds(synthetic_root):
    return load_dataset(synthetic_root)


def right_for_some_cells(val) -> np.ndarray:
    """Probabilities that are right for the cells whose name hashes even, and wrong for the others."""
    labels, groups = labels_of(val), groups_of(val)
    right = np.array([zlib.crc32(str(g).encode()) % 2 == 0 for g in groups])
    predicted = np.where(right, labels, (labels + 1) % 4)
    probs = np.full((len(val), 4), 0.1)
    probs[np.arange(len(val)), predicted] = 0.7
    return probs


class Scorer:
    """Stands in for training: counts the folds it is asked to train, and can fail on one."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls, self.fail_on_call = 0, fail_on_call

    def __call__(self, train, val, config):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # the laptop lid closed mid-fold
        assert not {r.original for r in train} & {r.original for r in val}, "a cell on both sides"
        return right_for_some_cells(val)


def test_every_training_cell_is_scored_once_and_the_pooled_accuracy_is_theirs(cv, ds, tmp_path):
    result, missing = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    assert missing == []
    pooled = result["pooled"]
    assert pooled["n_images"] == len(ds.train)
    assert pooled["n_originals"] == len({r.original for r in ds.train})
    expected = np.mean(right_for_some_cells(ds.train).argmax(1) == labels_of(ds.train))
    assert 0.2 < expected < 0.8  # the check below can tell right from wrong
    assert pooled["accuracy"] == pytest.approx(expected)
    assert [f["images"] for f in result["folds"]] and sum(f["images"] for f in result["folds"]) == len(ds.train)
    assert result["name"] == "k-3" and result["k"] == 3


def test_a_second_run_keeps_the_finished_folds_instead_of_training_them_again(cv, ds, tmp_path):
    first, _ = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    again = Scorer()
    second, _ = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=again)
    assert again.calls == 0
    assert second["pooled"]["accuracy"] == first["pooled"]["accuracy"]
    for fold in tmp_path.glob("fold-*.json"):  # kept before a setting was added to Config: kept still
        kept = json.loads(fold.read_text())
        fold.write_text(json.dumps({**kept, "config": {k: v for k, v in kept["config"].items() if k != "channel_jitter"}}))
    cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=again)
    assert again.calls == 0
    cv.cross_validate(ds, Config(channel_jitter=True), k=3, folds_dir=tmp_path, score=again)
    assert again.calls == 3


def test_a_kept_fold_of_another_recipe_or_other_images_is_trained_again(cv, ds, tmp_path):
    cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    fold_1 = tmp_path / "fold-1-of-3.json"
    kept = json.loads(fold_1.read_text())
    fold_1.write_text(json.dumps({**kept, "config": Config(image_size=160).to_dict()}))
    fold_2 = tmp_path / "fold-2-of-3.json"
    kept = json.loads(fold_2.read_text())
    fold_2.write_text(json.dumps({**kept, "images_scored": kept["images_scored"][1:]}))
    again = Scorer()
    cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=again)
    assert again.calls == 2


def test_some_folds_now_and_the_rest_later_give_what_one_run_gives(cv, ds, tmp_path):
    whole, _ = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path / "whole", score=Scorer())
    part, missing = cv.cross_validate(ds, Config(), k=3, only={1}, folds_dir=tmp_path / "parts", score=Scorer())
    assert part is None and missing == [2, 3]
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["fold-1-of-3.json"]
    rest, _ = cv.cross_validate(ds, Config(), k=3, only={2, 3}, folds_dir=tmp_path / "parts", score=Scorer())
    assert rest["pooled"] == whole["pooled"]


def test_a_run_stopped_midway_keeps_the_folds_it_finished_and_resumes_at_the_next(cv, ds, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer(fail_on_call=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-1-of-3.json"]
    resumed = Scorer()
    result, _ = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=resumed)
    assert result is not None and resumed.calls == 2


@pytest.fixture
def project(cv, synthetic_root, tmp_path, monkeypatch):
    """The script's folders moved to tmp_path, and the synthetic dataset as the data."""
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    monkeypatch.setattr(cv, "BUILD", tmp_path / "build")
    monkeypatch.setattr(cv, "PUBLISHED", tmp_path / "benchmarks")
    return tmp_path


def test_a_run_writes_its_result_to_build_and_publishes_only_when_asked(cv, project, capsys):
    assert cv.main(["--n-folds", "3"], score=Scorer()) == 0
    assert (project / "build" / "k-3.json").exists() and not (project / "benchmarks").exists()
    assert "3-fold cross-validation over 24 cells" in capsys.readouterr().out
    assert cv.main(["--image-size", "160", "--n-folds", "3", "--publish"], score=Scorer()) == 0
    assert sorted(p.name for p in (project / "benchmarks").iterdir()) == ["cross-validation-image_size-160-k-3.json"]


def test_an_unfinished_run_says_the_whole_command_that_finishes_it(cv, project, capsys):
    cv.main(["--image-size", "160", "--n-folds", "3", "--only", "2"], score=Scorer())
    out = capsys.readouterr().out
    assert "2 of 3 folds still to run (fold 1, 3)" in out
    assert "make cross-validate ARGS='--image-size 160 --n-folds 3'" in out
    assert not (project / "build" / "image_size-160-k-3.json").exists()


def test_the_result_has_the_shape_the_readme_table_reads(cv, ds, tmp_path):
    publish = load_script("tools/publish_results.py")
    result, _ = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    committed = json.loads((publish.CROSS_VALIDATION).read_text())
    assert result.keys() == committed.keys()
    assert result["pooled"].keys() == committed["pooled"].keys()
    assert result["folds"][0].keys() >= committed["folds"][0].keys()
    results = json.loads((publish.ROOT / "benchmarks" / "results-2026-11-27-2.json").read_text())
    assert f"{result['pooled']['accuracy']:.1%}" in publish.results_table(results, result)
    other = dataclasses.replace(Config(), image_size=160)
    result_160, _ = cv.cross_validate(ds, other, k=3, folds_dir=tmp_path / "160", score=Scorer())
    with pytest.raises(ValueError, match="image_size"):
        publish.results_table(results, result_160)


@pytest.mark.model
def test_the_recipe_trains_and_scores_a_fold(cv, ds, weights_dir):
    train, val = cv.hl.splits.folds_by_original(ds.train, 3, 0)[0]
    config = Config(image_size=96, head_epochs=1, fine_tune_epochs=0, batch_size=16)
    probs = cv.train_and_score(train, val, config)
    assert probs.shape == (len(val), 4)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_a_recipe_is_named_by_what_differs_from_the_kits(cv):
    assert cv.name_of(Config()) == "default"
    assert cv.name_of(dataclasses.replace(Config(), image_size=160)) == "image_size-160"
    assert cv.name_of(Config(), k=3) == "k-3"
    assert cv.result_path("default", publish=True).name == "cross-validation.json"
    assert cv.result_path("image_size-160", publish=True).name == "cross-validation-image_size-160.json"
    assert cv.result_path("default").parent == cv.BUILD


@pytest.mark.parametrize("text", ["0", "6", "1,x", "one"])
def test_fold_numbers_outside_the_folds_are_refused(cv, text):
    with pytest.raises(SystemExit, match="--only"):
        cv.parse_only(text, 5)


def test_fewer_than_two_folds_are_refused_before_any_data_is_read(cv, monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", "/nonexistent")
    with pytest.raises(SystemExit, match="--n-folds: cross-validation needs at least 2 folds; got 1"):
        cv.main(["--n-folds", "1"], score=Scorer())


def test_fold_numbers_are_read(cv):
    assert cv.parse_only("1,3", 5) == {1, 3}
    assert cv.parse_only(None, 5) is None
