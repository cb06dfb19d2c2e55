"""TensorFlow Lite export: the mobile-ready file gives the Keras model's probabilities, run by LiteRT
(the kit's dependency), and by tf.lite where LiteRT is not installed."""

from __future__ import annotations

import platform
import sys
import warnings

import numpy as np
import pytest

from hematolib import export, model as mdl
from tests.helpers import smear_with_nucleus

pytestmark = pytest.mark.model

LITERT_HAS_WHEELS = not (sys.platform == "darwin" and platform.machine() == "x86_64")  # pyproject's marker
DELETION_WARNING = "tf.lite.Interpreter is deprecated"


@pytest.fixture(params=["LiteRT", "tf.lite"])
def runtime(request, monkeypatch):
    """Each test runs on LiteRT, then with LiteRT hidden (as if not installed) on the tf.lite fallback."""
    if request.param == "LiteRT" and not LITERT_HAS_WHEELS:
        pytest.skip("ai-edge-litert has no wheels for this platform")
    if request.param == "tf.lite":
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails as if not installed
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    return request.param


def load(path, runtime):
    """TFLiteModel(path), checking that `runtime` runs it and that only tf.lite warns of its deletion."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lite = export.TFLiteModel(path)
    assert lite.runtime == runtime
    deletion = [w for w in caught if DELETION_WARNING in str(w.message)]
    assert bool(deletion) == (runtime == "tf.lite")
    return lite


def test_litert_is_installed_and_preferred():
    if not LITERT_HAS_WHEELS:
        pytest.skip("ai-edge-litert has no wheels for this platform")
    from ai_edge_litert.interpreter import Interpreter

    assert export.interpreter_class() == (Interpreter, "LiteRT")


def test_without_litert_the_tf_lite_interpreter_runs(monkeypatch):
    import tensorflow as tf

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert export.interpreter_class() == (tf.lite.Interpreter, "tf.lite")


def test_an_untrained_kit_model_gives_the_same_outputs_in_tflite(runtime, tmp_path):
    model = mdl.build(alpha=0.35, image_size=32, weights=None, crop=True)
    lite = load(export.to_tflite(model, tmp_path / "m.tflite"), runtime)
    assert lite.input_size == (240, 320)
    image = smear_with_nucleus(100, 200).astype("float32")
    probs = lite.probabilities(image)
    assert probs.shape == (4,) and abs(float(probs.sum()) - 1) < 1e-5
    np.testing.assert_allclose(probs, model(image[None]).numpy()[0], atol=1e-4)


@pytest.fixture(scope="module")
def exported(weights_dir, tmp_path_factory):
    """{"crop": ..., "flips": ...}: the kit's model (ImageNet weights) and its .tflite file, made once."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
        for name, flips in (("crop", False), ("flips", True)):
            model = mdl.build(alpha=0.35, image_size=64, crop=True, flips=flips)
            folder = tmp_path_factory.mktemp(name)
            out[name] = model, export.to_tflite(model, folder / f"{name}.tflite")
    return out


@pytest.mark.real_data
def test_a_cropping_model_exports_to_tflite_with_the_same_outputs(exported, runtime):
    model, path = exported["crop"]
    assert [p.name for p in path.parent.iterdir()] == ["crop.tflite"]  # written atomically: no leftovers
    lite = load(path, runtime)
    assert lite.input_size == (240, 320)
    for cy, cx in ((100, 200), (50, 40)):
        image = smear_with_nucleus(cy, cx).astype("float32")
        np.testing.assert_allclose(lite.probabilities(image), model(image[None]).numpy()[0], atol=1e-4)


@pytest.mark.real_data
def test_a_model_with_flips_exports_to_tflite_with_the_same_outputs(exported, runtime):
    model, path = exported["flips"]
    lite = load(path, runtime)
    image = smear_with_nucleus(120, 90).astype("float32")
    probs = lite.probabilities(image)
    assert probs.shape == (4,)
    np.testing.assert_allclose(probs, model(image[None]).numpy()[0], atol=1e-4)
