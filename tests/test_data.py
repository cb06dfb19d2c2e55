"""Finding and checking the dataset, original-cell ids, the grouped split and the tf.data pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hematolib import data, pipelines
from hematolib.config import CLASS_NAMES
from hematolib.data import (DataNotFoundError, DatasetLayoutError, cap_per_class, known_originals, load_dataset,
                            original_of, read_originals)
from hematolib.splits import folds_by_original, shared_originals, split_by_original, split_random
from hematolib.download import KAGGLE_CONTENTS


def images_dir(root: Path) -> Path:
    return root / "dataset2-master" / "images"


# --- layout ---------------------------------------------------------------------------------

def test_synthetic_dataset_loads_with_every_split_and_class(synthetic_root):
    ds = load_dataset(synthetic_root)
    assert ds.counts()["TRAIN"] == dict.fromkeys(CLASS_NAMES, 24)
    assert ds.original_counts()["TEST"] == dict.fromkeys(CLASS_NAMES, 3)
    assert len(ds.test_simple) == 12 and ds.problems == []
    assert ds.synthetic  # known by its SYNTHETIC.json marker, even when reached through HEMATO_DATA
    assert "share" not in data.summary(ds)  # its TRAIN and TEST cells are distinct


def test_kaggle_doubled_folder_and_bare_split_folders_are_found(synthetic_copy, tmp_path):
    doubled = tmp_path / "kaggle"
    (doubled / "dataset2-master").mkdir(parents=True)
    shutil.copytree(synthetic_copy / "dataset2-master", doubled / "dataset2-master" / "dataset2-master")
    assert load_dataset(doubled).images_dir == doubled / "dataset2-master" / "dataset2-master" / "images"
    assert load_dataset(images_dir(synthetic_copy)).counts() == load_dataset(synthetic_copy).counts()


def test_missing_class_folder_names_what_was_found_and_expected(synthetic_copy):
    shutil.rmtree(images_dir(synthetic_copy) / "TRAIN" / "MONOCYTE")
    with pytest.raises(DatasetLayoutError) as err:
        load_dataset(synthetic_copy)
    msg = str(err.value)
    assert "expected class folders EOSINOPHIL, LYMPHOCYTE, MONOCYTE, NEUTROPHIL" in msg
    assert "TRAIN" in msg and "missing MONOCYTE" in msg


def test_misnamed_class_folder_is_reported_as_unknown(synthetic_copy):
    train = images_dir(synthetic_copy) / "TRAIN"
    (train / "EOSINOPHIL").rename(train / "EOS")
    with pytest.raises(DatasetLayoutError, match=r"found EOS, LYMPHOCYTE.*missing EOSINOPHIL.*unknown EOS"):
        load_dataset(synthetic_copy)


def test_empty_class_folder_is_an_error(synthetic_copy):
    folder = images_dir(synthetic_copy) / "TEST" / "LYMPHOCYTE"
    for p in folder.iterdir():
        p.unlink()
    with pytest.raises(DatasetLayoutError, match="TEST/LYMPHOCYTE: the class folder has no images"):
        load_dataset(synthetic_copy)


def test_non_image_files_in_class_folders_are_named(synthetic_copy):
    (images_dir(synthetic_copy) / "TRAIN" / "NEUTROPHIL" / "notes.txt").write_text("hi")
    (images_dir(synthetic_copy) / "TRAIN" / "NEUTROPHIL" / ".DS_Store").write_text("ignored")
    with pytest.raises(DatasetLayoutError, match=r"1 file\(s\) that are not images.*notes.txt"):
        load_dataset(synthetic_copy)


def test_missing_test_split_is_an_error(synthetic_copy):
    shutil.rmtree(images_dir(synthetic_copy) / "TEST")
    with pytest.raises(DatasetLayoutError, match="expected TRAIN and TEST split folders; found TEST_SIMPLE, TRAIN"):
        load_dataset(synthetic_copy)


def test_wrong_folder_and_missing_path_get_specific_errors(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"Kaggle blood-cells layout.*found \['cats'\]"):
        load_dataset(tmp_path)
    with pytest.raises(DataNotFoundError, match="does not exist.*python -m hematolib download"):
        load_dataset(tmp_path / "nowhere")


def test_corrupt_and_zero_byte_images_are_skipped_and_reported(synthetic_copy):
    folder = images_dir(synthetic_copy) / "TRAIN" / "EOSINOPHIL"
    victims = sorted(folder.iterdir())[:2]
    victims[0].write_bytes(b"")
    victims[1].write_bytes(victims[1].read_bytes()[:300])
    with pytest.warns(UserWarning, match="Skipped 2 unreadable image"):
        ds = load_dataset(synthetic_copy)
    assert ds.counts()["TRAIN"]["EOSINOPHIL"] == 22
    assert {p.name for p, _ in ds.problems} == {v.name for v in victims}


def test_find_data_dir_prefers_hemato_data_and_reports_a_bad_one(monkeypatch, synthetic_root, tmp_path):
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    assert data.find_data_dir() == synthetic_root
    monkeypatch.setenv("HEMATO_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match="HEMATO_DATA=.*typo does not exist"):
        data.find_data_dir()


def test_no_data_falls_back_to_synthetic_loudly(monkeypatch, tmp_path):
    monkeypatch.delenv("HEMATO_DATA", raising=False)
    monkeypatch.setattr(data, "PROJECT_DIR", tmp_path)
    with pytest.warns(UserWarning, match="NO REAL DATA FOUND: using the built-in SYNTHETIC dataset"):
        ds = data.open_dataset()
    assert ds.synthetic and ds.root == tmp_path / "data" / "synthetic"
    with pytest.raises(DataNotFoundError, match="python -m hematolib download"):
        data.open_dataset(allow_synthetic=False)


# --- original cells and splits ------------------------------------------------------------------

def test_original_comes_from_the_table_only_for_the_very_file_it_lists(tmp_path):
    image = tmp_path / "_12_4587.jpeg"
    image.write_bytes(b"x" * 100)
    table = {"TRAIN/MONOCYTE/_12_4587.jpeg": (100, "BloodImage_00042")}
    assert original_of(image, "TRAIN", "MONOCYTE", table) == "BloodImage_00042"
    # the same name elsewhere, or another file under that name: a cell of its own, never "12"
    assert original_of(image, "TEST", "MONOCYTE", table) == "TEST/MONOCYTE/_12_4587"
    image.write_bytes(b"x" * 99)
    assert original_of(image, "TRAIN", "MONOCYTE", table) == "TRAIN/MONOCYTE/_12_4587"


def test_a_malformed_originals_table_is_refused_with_what_was_expected(tmp_path):
    bad = tmp_path / "originals.csv"
    bad.write_text("file,cell\nTRAIN/MONOCYTE/a.jpeg,1\n")
    with pytest.raises(DatasetLayoutError, match="expected the columns path,bytes,original"):
        read_originals(bad)
    bad.write_text("# a comment\npath,bytes,original\nTRAIN/MONOCYTE/a.jpeg,many,c1\n")
    with pytest.raises(DatasetLayoutError, match="found TRAIN/MONOCYTE/a.jpeg,many,c1"):
        read_originals(bad)


def test_shipped_table_names_every_kaggle_image_and_file_names_are_not_cells():
    table = known_originals()
    per_folder = {key: sum(p.startswith(f"{key[0]}/{key[1]}/") for p in table) for key in KAGGLE_CONTENTS}
    assert per_folder == {key: n for key, (n, _) in KAGGLE_CONTENTS.items()}
    # the images named _0_... in one folder show many different cells (Keras named them by their
    # position in a shuffled pass), so grouping by that number would leak cells into validation
    zeros = {cell for p, (_, cell) in table.items() if p.startswith("TRAIN/MONOCYTE/_0_")}
    assert len(zeros) >= 10
    # and the augmentation drew every original once per pass: images per original are even
    for split, class_name in [("TRAIN", "MONOCYTE"), ("TEST", "LYMPHOCYTE"), ("TEST", "EOSINOPHIL")]:
        counts = np.unique([cell for p, (_, cell) in table.items() if p.startswith(f"{split}/{class_name}/")],
                           return_counts=True)[1]
        assert counts.max() - counts.min() <= 3, (split, class_name, counts)


@pytest.mark.real_data
def test_real_dataset_is_grouped_by_photograph(real_dataset):
    originals = real_dataset.original_counts()
    # 277 TRAIN photographs, one (BloodImage_00280) not in Kaggle's originals, and 5 pairs that
    # show one scene; 71 TEST photographs, one pair of them one scene
    assert originals["TRAIN"] == {"EOSINOPHIL": 75, "LYMPHOCYTE": 26, "MONOCYTE": 16, "NEUTROPHIL": 155}
    assert originals["TEST"] == {"EOSINOPHIL": 13, "LYMPHOCYTE": 6, "MONOCYTE": 4, "NEUTROPHIL": 47}
    # two TEST photographs show a scene that a TRAIN photograph shows too (the dataset's own split)
    assert shared_originals(real_dataset.train, real_dataset.test) == {"BloodImage_00204", "BloodImage_00230"}
    assert data.summary(real_dataset).endswith(
        "TRAIN and TEST share 2 cell(s), photographed for both: BloodImage_00204, BloodImage_00230")
    assert {r.original for r in real_dataset.test_simple} <= {r.original for r in real_dataset.test}


def test_grouped_split_shares_no_original_and_keeps_every_class(synthetic_root):
    train = load_dataset(synthetic_root).train
    tr, va = split_by_original(train, val_fraction=0.2, seed=3)
    assert shared_originals(tr, va) == set()
    assert len(tr) + len(va) == len(train)
    for recs in (tr, va):
        assert {r.class_name for r in recs} == set(CLASS_NAMES)


def test_grouped_split_is_deterministic_per_seed(synthetic_root):
    train = load_dataset(synthetic_root).train
    a = split_by_original(train, 0.3, seed=1)[1]
    b = split_by_original(train, 0.3, seed=1)[1]
    c = split_by_original(train, 0.3, seed=2)[1]
    assert [r.path for r in a] == [r.path for r in b]
    assert {r.original for r in a} != {r.original for r in c}


def test_cross_validation_folds_validate_every_cell_once_and_never_leak(synthetic_root):
    train = load_dataset(synthetic_root).train
    folds = folds_by_original(train, k=3, seed=5)
    assert len(folds) == 3
    validated = [r.original for _, va in folds for r in va]
    assert sorted(validated) == sorted(r.original for r in train)  # every image validated exactly once
    for tr, va in folds:
        assert shared_originals(tr, va) == set() and len(tr) + len(va) == len(train)
        assert {r.class_name for r in va} == set(CLASS_NAMES)  # stratified: each fold has each class
    sizes = [len({r.original for r in va}) for _, va in folds]
    assert max(sizes) - min(sizes) <= len(CLASS_NAMES)
    same = folds_by_original(train, k=3, seed=5)
    assert [[r.path for r in va] for _, va in same] == [[r.path for r in va] for _, va in folds]
    assert {r.original for r in folds_by_original(train, k=3, seed=6)[0][1]} != {r.original for r in folds[0][1]}
    with pytest.raises(ValueError, match="at least 2 folds, got 1"):
        folds_by_original(train, k=1)
    with pytest.raises(ValueError, match="1000 folds need at least 1000 original cells"):
        folds_by_original(train, k=1000)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_impossible_fractions(synthetic_root, fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_original(load_dataset(synthetic_root).train, fraction)


def test_cap_per_class_spreads_over_originals(synthetic_root):
    train = load_dataset(synthetic_root).train
    capped = cap_per_class(train, 6, seed=0)
    for class_name in CLASS_NAMES:
        picked = [r for r in capped if r.class_name == class_name]
        assert len(picked) == 6 and len({r.original for r in picked}) == 6  # one per original
    assert cap_per_class(train, None) == list(train)


# --- the real dataset ---------------------------------------------------------------------------

@pytest.mark.real_data
def test_real_dataset_counts_match_kaggle(real_dataset):
    counts = real_dataset.counts()
    assert counts["TRAIN"] == {"EOSINOPHIL": 2497, "LYMPHOCYTE": 2483, "MONOCYTE": 2478, "NEUTROPHIL": 2499}
    assert sum(counts["TEST"].values()) == 2487 and sum(counts["TEST_SIMPLE"].values()) == 71
    assert real_dataset.problems == []


@pytest.mark.real_data
def test_grouped_split_of_real_train_is_clean_but_a_random_split_leaks(real_dataset):
    tr, va = split_by_original(real_dataset.train, 0.2, seed=42)
    assert shared_originals(tr, va) == set()
    assert 0.1 < len(va) / len(real_dataset.train) < 0.3
    leaky_tr, leaky_va = split_random(real_dataset.train, 0.2, seed=42)
    assert len(shared_originals(leaky_tr, leaky_va)) > 250  # nearly every cell is on both sides (of 272)


# --- tf.data ------------------------------------------------------------------------------------

def test_pipeline_yields_resized_float_batches_with_labels(synthetic_root):
    recs = load_dataset(synthetic_root).test
    batches = list(pipelines.make_pipeline(recs, image_size=64, batch_size=16))
    x, y = batches[0]
    assert x.shape == (16, 64, 64, 3) and x.dtype.name == "float32"
    assert 0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 255
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert labels.tolist() == [r.label for r in recs]
    # no tf.data autotuning: its thread made each epoch's end wait up to a minute, idle
    assert pipelines.make_pipeline(recs, image_size=64).options().autotune.enabled is False


def test_pipeline_refuses_an_empty_list():
    with pytest.raises(ValueError, match="no images"):
        pipelines.make_pipeline([], 64)


# --- reliability: odd datasets ------------------------------------------------------------------

def test_duplicates_across_splits_are_warned(synthetic_copy):
    images = images_dir(synthetic_copy)
    source = sorted((images / "TRAIN" / "MONOCYTE").iterdir())[0]
    shutil.copy(source, images / "TEST" / "MONOCYTE" / "_99_1.jpeg")
    with pytest.warns(UserWarning, match="1 image\\(s\\) appear, byte for byte, in more than one split"):
        ds = load_dataset(synthetic_copy)
    assert [(a.name, b.name) for a, b in ds.duplicates] in ([(source.name, "_99_1.jpeg")], [("_99_1.jpeg", source.name)])


def test_clean_dataset_has_no_duplicates(synthetic_root):
    assert load_dataset(synthetic_root).duplicates == []


def test_images_of_unexpected_size_and_mode_are_resized_into_the_pipeline(synthetic_copy):
    from PIL import Image

    folder = images_dir(synthetic_copy) / "TRAIN" / "LYMPHOCYTE"
    Image.new("L", (1000, 50), 80).save(folder / "_98_1.png")  # grayscale, odd size, PNG
    Image.new("RGBA", (30, 90), (200, 0, 0, 255)).save(folder / "_97_1.png")
    ds = load_dataset(synthetic_copy)
    odd = [r for r in ds.train if r.path.suffix == ".png"]
    x, _ = next(iter(pipelines.make_pipeline(odd, 48, batch_size=2)))
    assert x.shape == (2, 48, 48, 3)


def test_a_read_only_data_folder_is_read_and_never_written(synthetic_copy):
    import os
    import stat

    before = sorted((p, p.stat().st_mtime_ns) for p in synthetic_copy.rglob("*"))
    for p in [synthetic_copy, *synthetic_copy.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        ds = load_dataset(synthetic_copy)
        list(pipelines.make_pipeline(ds.test[:8], 32, batch_size=8))
    finally:
        for p in [synthetic_copy, *synthetic_copy.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert sorted((p, p.stat().st_mtime_ns) for p in synthetic_copy.rglob("*")) == before
    assert os.access(synthetic_copy, os.R_OK)
