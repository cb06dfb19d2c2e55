"""TensorFlow Lite export: the mobile-ready file gives the Keras model's probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from hematolib import export, model as mdl
from tests.helpers import smear_with_nucleus


@pytest.mark.real_data
def test_a_cropping_model_exports_to_tflite_with_the_same_outputs(weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=64, crop=True)
    path = export.to_tflite(model, tmp_path / "m.tflite")
    lite = export.TFLiteModel(path)
    assert lite.input_size == (240, 320)
    for cy, cx in ((100, 200), (50, 40)):
        image = smear_with_nucleus(cy, cx).astype("float32")
        np.testing.assert_allclose(lite.probabilities(image), model(image[None]).numpy()[0], atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


@pytest.mark.real_data
def test_a_model_with_flips_exports_to_tflite_with_the_same_outputs(weights_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    model = mdl.build(alpha=0.35, image_size=64, crop=True, flips=True)
    lite = export.TFLiteModel(export.to_tflite(model, tmp_path / "f.tflite"))
    image = smear_with_nucleus(120, 90).astype("float32")
    probs = lite.probabilities(image)
    assert probs.shape == (4,)
    np.testing.assert_allclose(probs, model(image[None]).numpy()[0], atol=1e-4)
