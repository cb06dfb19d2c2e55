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
    result = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    pooled = result["pooled"]
    assert pooled["n_images"] == len(ds.train)
    assert pooled["n_originals"] == len({r.original for r in ds.train})
    expected = np.mean(right_for_some_cells(ds.train).argmax(1) == labels_of(ds.train))
    assert 0.2 < expected < 0.8  # the check below can tell right from wrong
    assert pooled["accuracy"] == pytest.approx(expected)
    assert [f["images"] for f in result["folds"]] and sum(f["images"] for f in result["folds"]) == len(ds.train)
    assert result["name"] == "default" and result["k"] == 3


def test_a_second_run_keeps_the_finished_folds_instead_of_training_them_again(cv, ds, tmp_path):
    first = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer())
    again = Scorer()
    second = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=again)
    assert again.calls == 0
    assert second["pooled"]["accuracy"] == first["pooled"]["accuracy"]


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


def test_some_folds_now_and_the_rest_later_give_what_one_run_gives(cv, ds, tmp_path, capsys):
    whole = cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path / "whole", score=Scorer())
    assert cv.cross_validate(ds, Config(), k=3, only={1}, folds_dir=tmp_path / "parts", score=Scorer()) is None
    assert "--folds 2,3" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["fold-1-of-3.json"]
    rest = cv.cross_validate(ds, Config(), k=3, only={2, 3}, folds_dir=tmp_path / "parts", score=Scorer())
    assert rest["pooled"] == whole["pooled"]


def test_a_fold_interrupted_midway_leaves_the_finished_ones_and_no_half_written_file(cv, ds, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=Scorer(fail_on_call=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fold-1-of-3.json"]
    resumed = Scorer()
    assert cv.cross_validate(ds, Config(), k=3, folds_dir=tmp_path, score=resumed) is not None
    assert resumed.calls == 2


def test_a_recipe_is_named_by_what_differs_from_the_kits(cv):
    assert cv.name_of(Config()) == "default"
    assert cv.name_of(dataclasses.replace(Config(), image_size=160)) == "image_size-160"
    assert cv.result_path("default").name == "cross-validation.json"
    assert cv.result_path("image_size-160").name == "cross-validation-image_size-160.json"


@pytest.mark.parametrize("text", ["0", "6", "1,x", "one"])
def test_fold_numbers_outside_the_folds_are_refused(cv, text):
    with pytest.raises(SystemExit, match="--folds"):
        cv.parse_folds(text, 5)


def test_fold_numbers_are_read(cv):
    assert cv.parse_folds("1,3", 5) == {1, 3}
    assert cv.parse_folds(None, 5) is None
