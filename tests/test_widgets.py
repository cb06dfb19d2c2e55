"""The classify widget driven through its real state path (ipywidgets 8 payloads) and v7-style values."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from hematolib import model as mdl
from hematolib.config import CLASS_NAMES
from hematolib.data import load_dataset
from hematolib.inference import Predictor
from hematolib.widgets import ClassifyApp, iter_uploads


@pytest.fixture(scope="module")
def predictor():
    return Predictor(mdl.build(alpha=0.35, image_size=64, weights=None))


@pytest.fixture
def app(predictor, synthetic_root):
    return ClassifyApp(predictor, samples=load_dataset(synthetic_root).test_simple[:4])


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def smear(synthetic_root) -> bytes:
    return next((synthetic_root / "dataset2-master/images/TEST/EOSINOPHIL").iterdir()).read_bytes()


def v8_payload(name: str, data: bytes) -> dict:
    """What the browser sends to the kernel for one file in ipywidgets 8."""
    return {"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
            "last_modified": 1_700_000_000_000}


def upload_v8(app, *files):
    app.upload.set_state({"value": [v8_payload(n, d) for n, d in files]})
    return app.results.value


def test_v7_and_v8_values_give_the_same_files():
    data = b"\xff\xd8abc"
    v8 = (v8_payload("a.jpg", data),)
    v7 = {"a.jpg": {"metadata": {"name": "a.jpg", "type": "image/jpeg", "size": 5}, "content": data}}
    assert iter_uploads(v8) == iter_uploads(v7) == [("a.jpg", data)]
    assert iter_uploads(()) == iter_uploads({}) == []


def test_good_upload_shows_class_confidence_bars_card_and_time(app, synthetic_root):
    page = upload_v8(app, ("cell.jpeg", smear(synthetic_root)))
    assert page.count("hv-result") == 1 and "hv-error" not in page
    predicted = [c for c in CLASS_NAMES if f"Predicted: {c} (" in page]
    assert len(predicted) == 1
    assert all(c.title() in page for c in CLASS_NAMES)  # a bar per class
    assert "Looks like:" in page and "prediction took" in page and "data:image/png;base64," in page
    assert app.upload.value == ()  # cleared, so the same file can be uploaded again


def test_several_files_at_once_each_get_a_card(app, synthetic_root):
    page = upload_v8(app, ("a.jpeg", smear(synthetic_root)), ("b.png", encode(Image.new("RGB", (50, 40)))))
    assert page.count("hv-result") == 2


def test_v7_style_change_is_handled(app, synthetic_root):
    data = smear(synthetic_root)
    app._on_upload({"new": {"x.jpeg": {"metadata": {"name": "x.jpeg"}, "content": data}}})
    assert app.results.value.count("hv-result") == 1


def _gif() -> bytes:
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


BAD = {
    "notes.txt": (b"just some text", "not an image file"),
    "empty.jpg": (b"", "empty (0 bytes)"),
    "huge.png": (encode(Image.new("L", (9000, 9000))), "too large"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_uploads_get_a_message_and_the_widget_keeps_working(app, synthetic_root, name):
    data, message = BAD[name]
    page = upload_v8(app, (name, data))
    assert "Could not classify" in page and message in page and "hv-result" not in page
    assert upload_v8(app, ("next.jpeg", smear(synthetic_root))).count("hv-result") == 1


def test_truncated_jpeg_gets_a_message(app, synthetic_root):
    data = encode(Image.effect_noise((300, 300), 60).convert("RGB"), "JPEG")
    page = upload_v8(app, ("cut.jpg", data[: len(data) // 3]))
    assert "damaged or truncated" in page


def test_file_over_the_size_limit_is_refused(predictor):
    small = ClassifyApp(predictor, max_bytes=100_000)
    page = small.classify("big.png", encode(Image.effect_noise((300, 300), 90).convert("RGB")))
    assert "the file is 0.2 MB; the limit is 0.1 MB" in page


@pytest.mark.parametrize("name, data, note", [
    ("gray.png", encode(Image.new("L", (40, 40), 120)), "grayscale"),
    ("alpha.png", encode(Image.new("RGBA", (40, 40), (200, 0, 0, 128))), "transparency"),
    ("deep.png", encode(Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16))), "8 bits"),
    ("cmyk.jpg", encode(Image.new("CMYK", (40, 40), (0, 200, 200, 0)), "JPEG"), "CMYK"),
    ("anim.gif", _gif(), "using the first"),
])
def test_odd_image_modes_are_converted_with_a_note(app, name, data, note):
    page = upload_v8(app, (name, data))
    assert page.count("hv-result") == 1 and note in page


def test_an_image_without_a_white_cell_gets_a_note_and_a_whole_cell_does_not(app):
    from tests.helpers import smear_with_nucleus

    empty = upload_v8(app, ("red-cells-only.png", encode(Image.new("RGB", (320, 240), (222, 150, 162)))))
    assert empty.count("hv-result") == 1  # still classified, with the warning beside the label
    assert "red-cells-only.png: hardly any purple nucleus stain (0 pixels in 320x240)" in empty
    whole = upload_v8(app, ("cell.png", encode(Image.fromarray(smear_with_nucleus(120, 160, radius=30)))))
    assert whole.count("hv-result") == 1 and "nucleus stain" not in whole


def test_sample_picker_classifies_without_upload(app):
    app.picker.value = 2
    assert app.results.value.count("hv-result") == 1
    assert app.samples[2].path.name in app.results.value


def test_grad_cam_switch_adds_an_overlay(app, synthetic_root):
    assert "alt='Grad-CAM'" not in upload_v8(app, ("a.jpeg", smear(synthetic_root)))
    app.grad_cam.value = True
    assert "alt='Grad-CAM'" in upload_v8(app, ("a.jpeg", smear(synthetic_root)))


def test_uncertain_predictions_are_flagged(predictor, synthetic_root):
    app = ClassifyApp(Predictor(predictor.model, uncertain_below=1.01))
    assert "Uncertain: confidence below" in app.classify("a.jpeg", smear(synthetic_root))


def test_without_a_model_the_app_says_how_to_get_one(tmp_path):
    app = ClassifyApp.from_model(tmp_path / "none.keras")
    assert app.predictor is None and "No model at" in app.status.value
    assert app.upload.disabled and app.train_button.layout.display is None
    assert "no model loaded" in app.classify("x.png", b"whatever")


def test_a_broken_model_file_is_reported_not_fatal(tmp_path):
    (tmp_path / "m.keras").write_text("not a model")
    app = ClassifyApp.from_model(tmp_path / "m.keras")
    assert app.predictor is None and "not a Keras .keras model file" in app.status.value


def test_uploads_are_never_written_to_disk(app, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    upload_v8(app, ("a.jpeg", smear(synthetic_root)), ("bad.txt", b"nope"))
    assert os.listdir(tmp_path) == []


def test_predictions_reuse_one_traced_function(predictor):
    rng = np.random.default_rng(0)
    for shape in ((240, 320, 3), (100, 100, 3), (64, 80, 3), (500, 300, 3)):
        predictor.predict_array(rng.integers(0, 255, shape, dtype=np.uint8))
    assert predictor._forward.experimental_get_tracing_count() == 1


@pytest.mark.real_data
def test_the_train_button_makes_a_model_and_the_app_becomes_usable(tmp_path, synthetic_root, weights_dir,
                                                                    monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    app = ClassifyApp.from_model(tmp_path / "quick.keras")
    assert app.predictor is None and app.upload.disabled
    app.train_button.click()
    assert app.predictor is not None and not app.upload.disabled
    assert (tmp_path / "quick.keras").exists() and "Model ready" in app.status.value
    assert "SYNTHETIC" in app.status.value  # trained on the synthetic set: the app says so
    assert upload_v8(app, ("a.jpeg", smear(synthetic_root))).count("hv-result") == 1
