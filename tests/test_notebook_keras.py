"""Notebooks 03 and 04 write transfer learning in plain Keras; hematolib's recipe is the same model
trained the same way. Their code cells are run here as the student runs them (small sizes)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

import hematolib as hl
from hematolib.config import Config
from hematolib.data import load_dataset
from hematolib.splits import split_by_original

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def code_cells(name: str) -> list[str]:
    return [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code"]


def cell_with(name: str, text: str) -> str:
    found = [c for c in code_cells(name) if text in c]
    assert len(found) == 1, f"{name}: expected one code cell with {text!r}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("name", ["03_build_mobilenetv2.ipynb", "04_fine_tuning.ipynb"])
def test_the_keras_calls_of_transfer_learning_are_in_the_notebooks_code(name):
    code = "\n".join(code_cells(name))
    for call in {"03_build_mobilenetv2.ipynb": ("MobileNetV2(", "trainable = False", "training=False", ".compile(",
                                                ".fit(", "include_top=False", "label_smoothing="),
                 "04_fine_tuning.ipynb": ("trainable = True", "BatchNormalization", ".compile(", ".fit(",
                                          "CosineDecay(", "warmup_target=")}[name]:
        assert call in code, f"{name} does not show {call}"
    assert "hl.train.fit_head" not in code and "hl.train.fine_tune" not in code and "hl.model.build(" not in code


def structure(model) -> list:
    """Each layer's type and configuration without its name, nested models expanded."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.append((type(layer).__name__, structure(layer)))
        else:
            config = {k: v for k, v in layer.get_config().items() if k not in ("name", "seed")}
            out.append((type(layer).__name__, config))
    return out


@pytest.fixture(scope="module")
def small(synthetic_root, weights_dir):
    ds = load_dataset(synthetic_root)
    config = Config(image_size=64, alpha=0.35, head_epochs=3, fine_tune_epochs=2, batch_size=16, seed=7)
    train, val = split_by_original(ds.train, 0.34, seed=0)
    return ds, config, train, val


def notebook_namespace(config, train, val) -> dict:
    import keras
    from keras import layers

    return dict(keras=keras, layers=layers, hl=hl, IMAGE_SIZE=config.image_size, ALPHA=config.alpha,
                EPOCHS=config.head_epochs, LEARNING_RATE=config.head_learning_rate,
                LABEL_SMOOTHING=config.label_smoothing, BATCH_SIZE=config.batch_size, SEED=config.seed,
                FINE_TUNE_EPOCHS=config.fine_tune_epochs, WARMUP_EPOCHS=config.warmup_epochs, train=train, val=val,
                x_train=hl.cache.crops(train, config.image_size), x_val=hl.cache.crops(val, config.image_size),
                y_train=hl.data.labels_of(train), y_val=hl.data.labels_of(val))


def run_cells(namespace: dict, *sources: str) -> dict:
    import math

    namespace.setdefault("math", math)
    for source in sources:
        exec(compile(source, "<notebook cell>", "exec"), namespace)
    return namespace


@pytest.mark.real_data
def test_notebook_03s_network_is_the_kits_and_its_head_trains_to_the_same_weights(small, monkeypatch, weights_dir):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    _, config, train, val = small
    hl.train.set_seed(config.seed)
    ns = run_cells(notebook_namespace(config, train, val), cell_with("03_build_mobilenetv2.ipynb", "MobileNetV2("),
                   cell_with("03_build_mobilenetv2.ipynb", "head.compile("))
    hl.train.set_seed(config.seed)
    kit = hl.model.build(alpha=config.alpha, image_size=config.image_size, crop=True, flips=True)
    assert structure(ns["network"]) == structure(hl.model.network_of(kit))
    hl.train.fit_head(kit, train, val, config, verbose=0)
    for mine, theirs in zip(ns["network"].get_weights(), hl.model.network_of(kit).get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ns["head"].get_weights()[0], hl.model.head_of(
        hl.model.build(alpha=config.alpha, image_size=config.image_size)).get_weights()[0])  # it did train
    assert ns["history"].history["loss"][-1] < ns["history"].history["loss"][0]


@pytest.mark.real_data
def test_notebook_04s_fine_tuning_is_the_kits(small, monkeypatch, weights_dir, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    _, config, train, val = small
    hl.train.set_seed(config.seed)
    start = hl.model.build(alpha=config.alpha, image_size=config.image_size, crop=True, flips=True)
    path = hl.model_file.save(start, tmp_path / "head.keras", hl.model_file.ModelInfo(
        class_names=list(config.class_names), image_size=config.image_size, alpha=config.alpha, crop=True))
    results, given = [], notebook_namespace(config, train, val)
    for way in ("notebook", "kit"):
        hl.train.set_seed(config.seed)
        model, _ = hl.model_file.load(path)
        if way == "notebook":
            ns = run_cells({**given, "model": model, "config": config, "LEARNING_RATE": config.fine_tune_learning_rate},
                           *(cell_with("04_fine_tuning.ipynb", text) for text in
                             ("base.trainable = True", "CosineDecay(", "trainer.compile(")))
            trainable = len(ns["network"].trainable_weights)
        else:
            hl.train.fine_tune(model, train, val, config, augment=hl.augment.make_augmenter(seed=config.seed), verbose=0)
        results.append(hl.model.network_of(model).get_weights())
    assert trainable == 52 + 2  # every convolution of the base (no BatchNorm) and the head
    for mine, theirs in zip(*results, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    assert not np.allclose(results[0][0], hl.model.network_of(start).get_weights()[0])  # the base moved


def test_notebook_02s_augmenter_has_the_kits_layers_and_ranges():
    import keras
    from keras import layers

    cell = cell_with("02_augmentation.ipynb", "keras.Sequential([")
    built = [run_cells(dict(keras=keras, layers=layers, SEED=0), source)["augmenter"]
             for source in (cell, cell.replace("20 / 360", "30 / 360"))]
    assert structure(built[0]) == structure(hl.augment.make_augmenter())
    assert structure(built[1]) != structure(hl.augment.make_augmenter())  # a changed range is caught
