"""The classify widget driven the way the page drives it, under ipywidgets 8 and under 7.

`Page` sends Python the comm messages that the installed ipywidgets' own frontend sends when a
user picks files (8: `value`, the files with their bytes as binary buffers; 7: `_counter`,
`metadata` and `data`, only the attributes that changed), so the widget's real observers fire.
CI runs this file twice: with the kit's ipywidgets 8, and in a small environment with ipywidgets
7 (what Colab runs) and no TensorFlow, where a stand-in predictor gives the answers and the tests
that need the model skip.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import types

import ipywidgets
import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers
from PIL import Image

from hematolib.config import CLASS_NAMES
from hematolib.data import load_dataset
from hematolib.inference import Prediction
from hematolib.uploads import MESSAGE_OVERHEAD, guard_html, iter_uploads, message_limit
from hematolib.widgets import ClassifyApp

IPYWIDGETS = int(ipywidgets.__version__.split(".")[0])
HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_model = pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow, which the ipywidgets 7 environment lacks")
only_v7 = pytest.mark.skipif(IPYWIDGETS != 7, reason="ipywidgets 7 behaviour")
only_v8 = pytest.mark.skipif(IPYWIDGETS != 8, reason="ipywidgets 8 behaviour")


def test_the_ipywidgets_version_under_test_is_7_or_8():
    print(f"widget tests under ipywidgets {ipywidgets.__version__}")
    assert IPYWIDGETS in (7, 8)


class StandInPredictor:
    """A Predictor's interface with a fixed answer: the model where TensorFlow is not installed."""

    input_size = (64, 64)
    info = None
    uncertain_below = 0.6

    def predict_array(self, rgb, name="image", notes=None):
        probs = dict(zip(CLASS_NAMES, (0.7, 0.1, 0.1, 0.1)))
        return Prediction(name, "EOSINOPHIL", 0.7, probs, 0.001, list(notes or []))


@pytest.fixture(scope="module")
def predictor():
    if not HAS_TF:
        return StandInPredictor()
    from hematolib import model as mdl
    from hematolib.inference import Predictor

    return Predictor(mdl.build(alpha=0.35, image_size=64, weights=None))


@pytest.fixture
def app(predictor, synthetic_root):
    return ClassifyApp(predictor, samples=load_dataset(synthetic_root).test_simple[:4])


@pytest.fixture
def classified(app, monkeypatch):
    """The names of the files the app classified, in order: proof that an upload was seen."""
    names, classify = [], app.classify
    monkeypatch.setattr(app, "classify", lambda name, data: names.append(name) or classify(name, data))
    return names


def send(widget, state: dict) -> None:
    """Deliver a state update from the page to Python as the comm does: bytes travel as buffers."""
    state, paths, buffers = _remove_buffers(state)
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": paths}},
                        "buffers": [memoryview(b) for b in buffers]})


class Page:
    """The browser's copy of one FileUpload, sending Python what the installed version's frontend sends."""

    def __init__(self, widget, results=None):
        self.widget, self.results = widget, results
        self.state = {"_counter": 0, "metadata": [], "data": []} if IPYWIDGETS == 7 else {"value": []}

    def pick(self, *files, sizes=None, lost=False) -> str:
        """The user picks `files` ((name, bytes) pairs); `sizes`: what the browser says they weigh;
        `lost`: the message never reaches Python (Colab drops uploads of 1 MB or more)."""
        sizes = [len(d) if s is None else s for (_, d), s in zip(files, sizes or [None] * len(files))]
        if IPYWIDGETS == 7:
            new = {"_counter": self.state["_counter"] + len(files), "error": "",
                   "metadata": [{"name": n, "type": "image/png", "size": s, "lastModified": 1_700_000_000_000}
                                for (n, _), s in zip(files, sizes)],
                   "data": [bytes(d) for _, d in files]}
        else:
            new = {"value": [{"name": n, "type": "image/png", "size": s, "content": bytes(d),
                              "last_modified": 1_700_000_000_000} for (n, d), s in zip(files, sizes)]}
        changed = {k: v for k, v in new.items() if self.state.get(k) != v}  # Backbone sends changes only
        self.state.update(new)
        if not lost:
            send(self.widget, changed)
            self.sync()
        return self.results.value if self.results is not None else ""

    def sync(self) -> None:
        """Python's changes to the synced attributes reach the page (ipywidgets 8: `value` cleared)."""
        for key in self.state:
            value = getattr(self.widget, key)
            self.state[key] = [{**f, "content": bytes(f["content"])} for f in value] if key == "value" else value


def page_of(app) -> Page:
    return Page(app.upload, app.results)


def upload(app, *files) -> str:
    return page_of(app).pick(*files)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def smear(synthetic_root) -> bytes:
    return next((synthetic_root / "dataset2-master/images/TEST/EOSINOPHIL").iterdir()).read_bytes()


def big_png(megabytes: float) -> bytes:
    """A PNG of noise that weighs about `megabytes` (noise does not compress)."""
    side = int((megabytes * 1e6 / 3) ** 0.5) + 1
    return encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)))


def test_v7_and_v8_values_give_the_same_files():
    data = b"\xff\xd8abc"
    v8 = ({"name": "a.jpg", "type": "image/jpeg", "size": 5, "content": memoryview(data)},)
    v7 = {"a.jpg": {"metadata": {"name": "a.jpg", "type": "image/jpeg", "size": 5}, "content": data}}
    assert iter_uploads(v8) == iter_uploads(v7) == [("a.jpg", data)]
    assert iter_uploads(()) == iter_uploads({}) == []


def test_good_upload_shows_class_confidence_bars_card_and_time(app, synthetic_root):
    page = upload(app, ("cell.jpeg", smear(synthetic_root)))
    assert page.count("hv-result") == 1 and "hv-error" not in page
    predicted = [c for c in CLASS_NAMES if f"Predicted: {c} (" in page]
    assert len(predicted) == 1
    assert all(c.title() in page for c in CLASS_NAMES)  # a bar per class
    assert "Looks like:" in page and "prediction took" in page and "data:image/png;base64," in page


def test_several_files_at_once_each_get_a_card(app, synthetic_root):
    page = upload(app, ("a.jpeg", smear(synthetic_root)), ("b.png", encode(Image.new("RGB", (50, 40)))))
    assert page.count("hv-result") == 2


def test_the_same_file_twice_is_classified_twice(app, classified, synthetic_root):
    page = page_of(app)
    page.pick(("cell.jpeg", smear(synthetic_root)))
    again = page.pick(("cell.jpeg", smear(synthetic_root)))
    assert classified == ["cell.jpeg", "cell.jpeg"] and again.count("hv-result") == 1
    page.pick(("other.png", encode(Image.new("RGB", (50, 40)))))
    assert classified[-1] == "other.png"


@only_v7
def test_v7_value_alone_misses_the_same_file_twice():
    """Why the widget watches `_counter` on ipywidgets 7: `value` stays equal, so it fires once."""
    upload, seen = ipywidgets.FileUpload(), []
    upload.observe(lambda change: seen.append("value"), names="value")
    upload.observe(lambda change: seen.append("_counter"), names="_counter")
    page = Page(upload)
    page.pick(("cell.png", b"\x89PNG same bytes"))
    page.pick(("cell.png", b"\x89PNG same bytes"))
    assert seen.count("_counter") == 2 and seen.count("value") == 1
    with pytest.raises(Exception, match="read-only"):
        upload.value = {}  # and it cannot be cleared


@only_v7
def test_v7_same_file_resent_in_full_is_classified_again(app, classified, synthetic_root):
    data = smear(synthetic_root)
    page = page_of(app)
    page.pick(("cell.jpeg", data))
    send(app.upload, {"_counter": 2, "metadata": page.state["metadata"], "data": [data], "error": ""})
    assert classified == ["cell.jpeg", "cell.jpeg"]


@only_v8
def test_v8_value_is_cleared_so_the_page_sends_the_same_file_again(app, synthetic_root):
    page = page_of(app)
    page.pick(("cell.jpeg", smear(synthetic_root)))
    assert app.upload.value == () and page.state["value"] == []


def test_an_upload_over_1_mb_that_arrives_is_classified(app, classified):
    data = big_png(1.5)
    assert len(data) > 1_000_000
    page = upload(app, ("large.png", data))
    assert classified == ["large.png"] and page.count("hv-result") == 1


def test_an_upload_that_arrives_empty_says_so_and_how_else_to_get_it_in(app, synthetic_root):
    page = page_of(app)
    shown = page.pick(("photo.png", b""), ("cell.jpeg", smear(synthetic_root)), sizes=[1_500_000, None])
    assert "photo.png" in shown and "the upload arrived empty: 0 of its 1.5 MB reached Python" in shown
    assert "File path box" in shown and "hematovision predict photo.png" in shown
    assert shown.count("hv-result") == 1  # the file that did arrive is still classified


def test_a_truly_empty_file_is_not_called_a_lost_upload(app):
    shown = upload(app, ("empty.png", b""))  # the browser says 0 bytes too
    assert "the file is empty (0 bytes)" in shown and "arrived empty" not in shown


@only_v7
def test_v7_an_upload_that_never_arrived_is_reported_with_the_next(app, classified, synthetic_root):
    page = page_of(app)
    page.pick(("photo.png", big_png(1.2)), lost=True)  # Colab drops it: Python sees nothing
    assert app.results.value == ""
    shown = page.pick(("cell.jpeg", smear(synthetic_root)))
    assert "1 earlier file" in shown and "never reached Python" in shown and "hematovision predict" in shown
    assert classified == ["cell.jpeg"] and shown.count("hv-result") == 1
    assert "earlier" not in page.pick(("next.jpeg", smear(synthetic_root)))  # counted once only


def test_after_a_lost_upload_the_next_one_still_works(app, classified, synthetic_root):
    page = page_of(app)
    page.pick(("photo.png", big_png(1.2)), lost=True)
    assert page.pick(("cell.jpeg", smear(synthetic_root))).count("hv-result") == 1
    assert classified == ["cell.jpeg"]


def test_the_upload_limit_follows_the_server_and_colab(predictor, monkeypatch):
    monkeypatch.delenv("HEMATO_MESSAGE_LIMIT", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert message_limit() == 10 * 1024 * 1024  # tornado's default websocket_max_message_size
    app = ClassifyApp(predictor)
    assert app.upload_limit == 10 * 1024 * 1024 - MESSAGE_OVERHEAD
    assert f"hv-limit-{app.upload_limit}" in app.upload._dom_classes
    assert "One upload carries up to 10.4 MB here" in app.status.value
    monkeypatch.setenv("HEMATO_MESSAGE_LIMIT", str(64 * 1024 * 1024))
    assert ClassifyApp(predictor).upload_limit == 64 * 1024 * 1024 - MESSAGE_OVERHEAD
    monkeypatch.delenv("HEMATO_MESSAGE_LIMIT")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    colab = ClassifyApp(predictor)
    assert colab.upload_limit == 1_000_000 - MESSAGE_OVERHEAD
    assert "0.9 MB here (Colab's limit)" in colab.status.value
    assert "Colab drops larger uploads" in colab.too_large_message("3.0")
    assert "/content/" in colab.too_large_message("3.0")


@pytest.mark.parametrize("text", ["64MB", "-1", "100"])
def test_a_bad_message_limit_setting_says_what_is_expected(monkeypatch, text):
    monkeypatch.setenv("HEMATO_MESSAGE_LIMIT", text)
    with pytest.raises(ValueError, match=f"HEMATO_MESSAGE_LIMIT='{text}': expected the server's "
                                         "websocket_max_message_size in bytes"):
        message_limit()


def test_the_page_script_carries_the_message_and_cannot_be_broken_out_of(app):
    script = guard_html(app.too_large_message("{size}"))
    assert script.count("</script>") == 1 and "hv-limit-" in script and ".hv-upload" in script
    assert f"this page carries at most {app.upload_limit / 1e6:.1f} MB at once" in script
    hostile = guard_html("</script><img src=x onerror=alert(1)>")
    assert hostile.count("</script>") == 1 and "<img" not in hostile


def test_display_shows_the_widget_and_the_page_script(app, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    app._ipython_display_()
    assert shown[0] is app.widget and "<script>" in shown[1].data
    assert f"{app.upload_limit / 1e6:.1f} MB at once" in shown[1].data


# What each version's FileUploadView does in the page (ipywidgets' own code, cut down): a hidden
# <input type=file> that the button's click opens; 8 keeps it out of the document, 7 puts it in
# the button. On change it reads the files and sends them to Python; here it records their names.
FRONTEND_JS = """
const button = document.querySelector(".hv-upload"), input = document.createElement("input");
input.type = "file"; input.multiple = true; input.style.display = "none";
if (IN_BUTTON) { button.appendChild(input); }
button.addEventListener("click", () => input.click());
input.addEventListener("click", () => { input.value = ""; });
input.addEventListener("change", () => { window.sent.push(Array.from(input.files).map((f) => f.name)); });
"""


@pytest.mark.browser
@pytest.mark.parametrize("version", [7, 8])
def test_the_page_refuses_an_upload_over_the_limit_before_reading_it(app, tmp_path, version):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(b"s" * 500)
    big.write_bytes(b"b" * 2000)
    html = (f"<div class='hv-app'><button class='hv-upload hv-limit-1000'>Upload images</button>"
            f"<div class='hv-results'><div class='widget-html-content'>earlier cards</div></div></div>"
            f"{guard_html(app.too_large_message('{size}'))}"
            f"<script>window.sent = []; const IN_BUTTON = {str(version == 7).lower()};{FRONTEND_JS}</script>")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_content(html)

            def pick(*paths):
                with page.expect_file_chooser() as chooser:
                    page.click(".hv-upload")
                chooser.value.set_files([str(path) for path in paths])

            pick(small)
            assert page.evaluate("window.sent") == [["small.png"]]
            pick(big, small)  # 2,500 bytes together: over the limit of 1,000
            assert page.evaluate("window.sent") == [["small.png"]]  # nothing read, nothing sent
            refused = page.locator(".hv-results .hv-not-sent").inner_text()
            assert "Not sent: big.png, small.png" in refused and "0.0 MB in one upload" in refused
            assert "hematovision predict big.png" in refused
            pick(small)
            assert page.evaluate("window.sent") == [["small.png"], ["small.png"]]
            assert page.locator(".hv-not-sent").count() == 0  # gone with the next upload
            pick(big)
            assert page.locator(".hv-not-sent").count() == 1
            page.evaluate("document.querySelector('.widget-html-content').innerHTML = 'new cards'")
            page.wait_for_selector(".hv-not-sent", state="detached")  # gone when Python shows new cards
        finally:
            browser.close()


def test_a_path_on_the_python_machine_is_classified_and_the_box_emptied(app, classified, synthetic_root,
                                                                       tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(big_png(1.2))
    send(app.path_box, {"value": f"  '{photo}' "})  # pasted with quotes and spaces
    assert classified == ["photo.png"] and app.results.value.count("hv-result") == 1
    assert app.path_box.value == ""


@pytest.mark.parametrize("case, message", [
    ("missing", "there is no file at"),
    ("folder", "there is no file at"),
    ("huge", "the file is 0.2 MB; the limit is 0.1 MB"),
])
def test_a_wrong_path_gets_a_message_and_stays_in_the_box(predictor, tmp_path, case, message):
    app = ClassifyApp(predictor, max_bytes=100_000)
    (tmp_path / "huge.png").write_bytes(b"\0" * 200_000)
    path = {"missing": tmp_path / "nope.png", "folder": tmp_path, "huge": tmp_path / "huge.png"}[case]
    send(app.path_box, {"value": str(path)})
    assert "Could not classify" in app.results.value and message in app.results.value
    assert "hv-result" not in app.results.value and app.path_box.value == str(path)


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
    page = page_of(app)
    shown = page.pick((name, data))
    assert "Could not classify" in shown and message in shown and "hv-result" not in shown
    assert page.pick(("next.jpeg", smear(synthetic_root))).count("hv-result") == 1


def test_truncated_jpeg_gets_a_message(app, synthetic_root):
    data = encode(Image.effect_noise((300, 300), 60).convert("RGB"), "JPEG")
    page = upload(app, ("cut.jpg", data[: len(data) // 3]))
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
    page = upload(app, (name, data))
    assert page.count("hv-result") == 1 and note in page


@needs_model
def test_an_image_without_a_white_cell_gets_a_note_and_a_whole_cell_does_not(app):
    from tests.helpers import smear_with_nucleus

    empty = upload(app, ("red-cells-only.png", encode(Image.new("RGB", (320, 240), (222, 150, 162)))))
    assert empty.count("hv-result") == 1  # still classified, with the warning beside the label
    assert "red-cells-only.png: hardly any purple nucleus stain (0 pixels in 320x240)" in empty
    whole = upload(app, ("cell.png", encode(Image.fromarray(smear_with_nucleus(120, 160, radius=30)))))
    assert whole.count("hv-result") == 1 and "nucleus stain" not in whole


def test_sample_picker_classifies_without_upload(app):
    send(app.picker, {"index": 3})  # the page sends the chosen option's index
    assert app.picker.value == 2
    assert app.results.value.count("hv-result") == 1
    assert app.samples[2].path.name in app.results.value


@needs_model
def test_grad_cam_switch_adds_an_overlay(app, synthetic_root):
    assert "alt='Grad-CAM'" not in upload(app, ("a.jpeg", smear(synthetic_root)))
    send(app.grad_cam, {"value": True})
    assert "alt='Grad-CAM'" in upload(app, ("a.jpeg", smear(synthetic_root)))


@needs_model
def test_uncertain_predictions_are_flagged(predictor, synthetic_root):
    from hematolib.inference import Predictor

    app = ClassifyApp(Predictor(predictor.model, uncertain_below=1.01))
    assert "Uncertain: confidence below" in app.classify("a.jpeg", smear(synthetic_root))


def test_without_a_model_the_app_says_how_to_get_one(tmp_path):
    app = ClassifyApp.from_model(tmp_path / "none.keras")
    assert app.predictor is None and "No model at" in app.status.value
    assert app.upload.disabled and app.path_box.disabled and app.train_button.layout.display is None
    assert "no model loaded" in app.classify("x.png", b"whatever")


@needs_model
def test_the_app_prefers_the_two_lab_model_and_says_which_labs_its_model_has_seen(predictor, tmp_path,
                                                                                  monkeypatch):
    import copy
    from types import SimpleNamespace

    from hematolib.pbc import CREDIT

    monkeypatch.setenv("HEMATO_MODELS", str(tmp_path))
    assert ClassifyApp.from_model().model_path == tmp_path / "hematovision.keras"  # none yet: notebook 04's
    (tmp_path / "hematovision_two_labs.keras").write_text("not a model")
    app = ClassifyApp.from_model()
    assert app.model_path == tmp_path / "hematovision_two_labs.keras" and app.predictor is None
    assert "hematovision_two_labs.keras" in app.status.value  # the file it tried, and why it failed
    two_labs = "Trained on two labs' cells (Kaggle, and PBC from Barcelona: Acevedo et al. 2020, CC BY 4.0)."
    for credits, synthetic, says in (([CREDIT], False, two_labs),
                                     ([], False, "Trained on one lab's cells (Kaggle)"),
                                     ([], True, "SYNTHETIC")):
        seen = copy.copy(predictor)
        seen.info = SimpleNamespace(synthetic_data=synthetic, crop=True, credits=credits)
        status = ClassifyApp(seen, model_path=tmp_path / "m.keras").status.value
        assert "Model m.keras ready" in status and says in status
        assert synthetic is ("cells (Kaggle" not in status)  # a synthetic model has seen no lab


@needs_model
def test_a_broken_model_file_is_reported_not_fatal(tmp_path):
    (tmp_path / "m.keras").write_text("not a model")
    app = ClassifyApp.from_model(tmp_path / "m.keras")
    assert app.predictor is None and "not a Keras .keras model file" in app.status.value


def test_uploads_are_never_written_to_disk(app, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    upload(app, ("a.jpeg", smear(synthetic_root)), ("bad.txt", b"nope"))
    assert os.listdir(tmp_path) == []


@needs_model
def test_predictions_reuse_one_traced_function(predictor):
    rng = np.random.default_rng(0)
    for shape in ((240, 320, 3), (100, 100, 3), (64, 80, 3), (500, 300, 3)):
        predictor.predict_array(rng.integers(0, 255, shape, dtype=np.uint8))
    assert predictor._forward.experimental_get_tracing_count() == 1


@needs_model
@pytest.mark.real_data
def test_the_train_button_makes_a_model_and_the_app_becomes_usable(tmp_path, synthetic_root, weights_dir,
                                                                    monkeypatch):
    monkeypatch.setenv("HEMATO_DATA", str(synthetic_root))
    monkeypatch.setenv("HEMATO_WEIGHTS_DIR", str(weights_dir))
    app = ClassifyApp.from_model(tmp_path / "quick.keras")
    assert app.predictor is None and app.upload.disabled
    app.train_button.click()
    assert app.predictor is not None and not app.upload.disabled
    assert (tmp_path / "quick.keras").exists() and "Model quick.keras ready" in app.status.value
    assert "SYNTHETIC" in app.status.value  # trained on the synthetic set: the app says so
    assert upload(app, ("a.jpeg", smear(synthetic_root))).count("hv-result") == 1


@needs_model  # the button imports the training code, which needs TensorFlow
def test_the_train_button_never_saves_a_one_lab_model_under_the_two_lab_name(tmp_path, monkeypatch):
    import hematolib.inference
    import hematolib.recipe
    from hematolib.model_file import ModelInfo

    monkeypatch.setenv("HEMATO_MODELS", str(tmp_path / "models"))
    asked = []

    def load_or_train(path):  # what the button asks for; training itself is tested above
        asked.append(path)
        if path.name == "broken.keras":
            raise RuntimeError("not trained in this test")
        return "a model", ModelInfo(class_names=list(CLASS_NAMES), image_size=64, alpha=0.35)

    monkeypatch.setattr(hematolib.recipe, "load_or_train", load_or_train)
    monkeypatch.setattr(hematolib.inference, "Predictor",
                        lambda model, names, info: types.SimpleNamespace(info=info, input_size=(240, 320)))
    models, drive = tmp_path / "models", tmp_path / "drive"  # drive: a two-lab name in any folder (Colab)
    for given, expected in ((models / "hematovision_two_labs.keras", models / "hematovision.keras"),
                            (drive / "hematovision_two_labs.keras", drive / "hematovision.keras"),
                            (tmp_path / "mine.keras", tmp_path / "mine.keras")):
        app = ClassifyApp.from_model(given)
        assert app.predictor is None and f"No model at {given}" in app.status.value
        assert (f"saved as {expected}: it sees one lab" in app.status.value) == (expected != given)
        app.train_button.click()
        assert asked[-1] == expected and app.model_path == app.model_file == expected
        assert f"Model {expected.name} ready" in app.status.value and "one lab's cells (Kaggle)" in app.status.value
        assert not app.upload.disabled
    drive.mkdir()
    (drive / "hematovision.keras").write_bytes(b"a saved model")  # now the button has one to load
    app = ClassifyApp.from_model(drive / "hematovision_two_labs.keras")
    assert f"or use the one-lab model saved at {drive / 'hematovision.keras'}" in app.status.value
    assert "train a quick one" not in app.status.value and app.train_button.description == "Use hematovision.keras (one lab)"
    assert ClassifyApp.from_model(tmp_path / "other.keras").train_button.description.startswith("Train a quick model")

    app = ClassifyApp.from_model(tmp_path / "broken.keras")
    app.train_button.click()
    assert "training failed: not trained in this test" in app.status.value and not app.train_button.disabled
    assert app.predictor is None and app.upload.disabled
