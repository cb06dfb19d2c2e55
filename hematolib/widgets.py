"""The upload-and-classify widget: drop smear images (or pick a sample), see the cell type.

Works with ipywidgets 8 (FileUpload.value is a tuple of dicts, content a memoryview) and
ipywidgets 7, which Colab still runs (a dict keyed by file name). Uploads are decoded in
memory and never written to disk.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .config import default_model_path
from .data import ImageRecord
from .images import MAX_FILE_BYTES, ImageDecodeError, decode_image

CELL_INFO = {
    "EOSINOPHIL": ("Bilobed nucleus; cytoplasm packed with large orange-red granules.",
                   "Fights parasites and takes part in allergic reactions; 1-4% of white cells."),
    "LYMPHOCYTE": ("Small cell; one large round, dark nucleus with a thin rim of blue cytoplasm.",
                   "Adaptive immunity: B cells make antibodies, T cells kill infected cells; 20-40%."),
    "MONOCYTE": ("The largest white cell; kidney- or horseshoe-shaped nucleus, grey-blue cytoplasm.",
                 "Leaves the blood to become macrophages that engulf debris and microbes; 2-8%."),
    "NEUTROPHIL": ("Nucleus of 3-5 lobes joined by thin strands; pale, finely granular cytoplasm.",
                   "First responder to bacterial infection, engulfs bacteria; 40-70% of white cells."),
}

_STYLE = """<style>
.hv-card {border:1px solid #ccc; border-radius:6px; padding:8px; margin:6px 0; display:flex; gap:12px;}
.hv-error {border-color:#d33; background:#fff4f4; color:#a00;}
.hv-uncertain {color:#b36b00; font-weight:bold;}
.hv-bar {background:#e8e8e8; width:180px; height:12px; display:inline-block; vertical-align:middle;}
.hv-bar > span {background:#4a78c2; height:12px; display:block;}
.hv-class {font-size:1.2em; font-weight:bold;}
</style>"""


def iter_uploads(value: Any) -> list[tuple[str, bytes]]:
    """(file name, bytes) for every file in a FileUpload value, ipywidgets 8 or 7 style."""
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7: {name: {"metadata": {...}, "content": bytes}}
        items = [(info.get("metadata", {}).get("name", name), info.get("content", b""))
                 for name, info in value.items()]
    else:  # ipywidgets 8: ({"name": ..., "content": memoryview, ...}, ...)
        items = [(f.get("name", "upload"), f.get("content", b"")) for f in value]
    return [(str(name), bytes(content or b"")) for name, content in items]


def _png_data_url(rgb: np.ndarray, max_side: int = 224) -> str:
    from PIL import Image

    img = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def result_html(prediction, preview: np.ndarray, cam: np.ndarray | None = None) -> str:
    """One result card: preview, class, confidence, probability bars, flags, cell card, timing."""
    p = prediction
    bars = "".join(
        f"<div>{html.escape(c.title()):<11} <span class='hv-bar'><span style='width:{v * 100:.0f}%'>"
        f"</span></span> {v:.1%}</div>" for c, v in p.probabilities.items())
    looks, does = CELL_INFO.get(p.class_name, ("", ""))
    flag = (f"<div class='hv-uncertain'>Uncertain: confidence below {p.uncertain_below:.0%}; "
            "do not trust this label.</div>" if p.uncertain else "")
    notes = "".join(f"<div><i>{html.escape(n)}</i></div>" for n in p.notes)
    images = f"<img src='{_png_data_url(preview)}' alt='preview' title='{html.escape(p.name)}'>"
    if cam is not None:
        images += f"<img src='{_png_data_url(cam)}' alt='Grad-CAM' title='Grad-CAM: where the model looked'>"
    return (f"<div class='hv-card hv-result'><div>{images}</div><div>"
            f"<div>{html.escape(Path(p.name).name)}</div>"
            f"<div class='hv-class'>Predicted: {p.class_name} ({p.confidence:.1%})</div>{flag}{bars}"
            f"<div><b>Looks like:</b> {looks}<br><b>Does:</b> {does}</div>{notes}"
            f"<div style='color:#777'>prediction took {p.seconds * 1000:.0f} ms</div></div></div>")


def error_html(name: str, message: str) -> str:
    """An error card for a file that could not be classified."""
    return (f"<div class='hv-card hv-error'><div><b>Could not classify {html.escape(Path(name).name)}</b>"
            f"<br>{html.escape(message)}</div></div>")


class ClassifyApp:
    """The widget: FileUpload + sample picker + Grad-CAM switch + result cards.

    `predictor` is an inference.Predictor (loaded once, reused for every image); with None the
    app explains how to get a model and offers a button that trains a quick one.
    """

    def __init__(self, predictor=None, samples: Sequence[ImageRecord] = (),
                 max_bytes: int = MAX_FILE_BYTES, model_path: str | Path | None = None):
        import ipywidgets as w

        self.predictor = predictor
        self.samples = list(samples)
        self.max_bytes = max_bytes
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.upload = w.FileUpload(accept="image/*", multiple=True, description="Upload images")
        options = [("Pick a sample image...", -1)] + [
            (f"{r.class_name.title()}: {r.path.name}", i) for i, r in enumerate(self.samples)]
        self.picker = w.Dropdown(options=options, value=-1, description="Sample:")
        self.grad_cam = w.Checkbox(value=False, description="Show Grad-CAM (where the model looks)",
                                   indent=False, layout=w.Layout(width="auto"))
        self.status = w.HTML()
        self.results = w.HTML()
        self.train_button = w.Button(description="Train a quick model (about a minute)",
                                     button_style="warning", layout=w.Layout(width="auto"))
        self.train_button.on_click(lambda _b: self.train_quick_model())
        self.upload.observe(self._on_upload, names="value")
        self.picker.observe(self._on_pick, names="value")
        controls = [self.upload, self.picker, self.grad_cam]
        self.widget = w.VBox([w.HTML(_STYLE), w.HBox(controls[:2]), self.grad_cam, self.status,
                              self.train_button, self.results])
        self._show_model_state()

    @classmethod
    def from_model(cls, path: str | Path | None = None, samples: Sequence[ImageRecord] = (), **kwargs
                   ) -> "ClassifyApp":
        """An app with the model at `path` (default models/hematovision.keras), or none if missing."""
        from .inference import Predictor
        from .model import ModelFileError

        path = Path(path) if path else default_model_path()
        predictor, problem = None, None
        if path.exists():
            try:
                predictor = Predictor.from_file(path)
            except ModelFileError as exc:
                problem = str(exc)
        app = cls(predictor, samples, model_path=path, **kwargs)
        if problem:
            app.status.value = error_html(path.name, problem)
        return app

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _show_model_state(self) -> None:
        ready = self.predictor is not None
        self.train_button.layout.display = None if not ready else "none"
        for control in (self.upload, self.picker, self.grad_cam):
            control.disabled = not ready
        if ready:
            info = getattr(self.predictor, "info", None)
            warn = " <b>Trained on SYNTHETIC data: a demo only.</b>" if info and info.synthetic_data else ""
            crop = " crops around the white cell," if info and info.crop else ""
            self.status.value = (f"Model ready ({'x'.join(map(str, self.predictor.input_size))} input;"
                                 f"{crop} loaded once). Upload smear images or pick a sample.{warn}")
        else:
            self.status.value = (f"<div class='hv-card hv-error'>No model at {html.escape(str(self.model_path))}. "
                                 "Run notebooks 03 and 04 to train one, or train a quick one here.</div>")

    def train_quick_model(self) -> None:
        """Train the quick recipe, save it to the model path and start using it."""
        from .inference import Predictor
        from .recipe import load_or_train

        self.status.value = "Training a quick model... (about a minute on a laptop CPU)"
        self.train_button.disabled = True
        try:
            model, info = load_or_train(self.model_path)
            self.predictor = Predictor(model, info.class_names, info=info)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the widget stays usable
            self.status.value = error_html("quick model", f"training failed: {exc}")
            self.train_button.disabled = False
            return
        self._show_model_state()

    def classify(self, name: str, data: bytes) -> str:
        """Classify one file's bytes; returns the HTML card (an error card for bad input)."""
        from .explain import grad_cam, overlay

        if self.predictor is None:
            return error_html(name, "no model loaded yet.")
        try:
            rgb, notes = decode_image(data, name=Path(name).name, max_bytes=self.max_bytes)
            prediction = self.predictor.predict_array(rgb, name, notes)
        except ImageDecodeError as exc:
            return error_html(name, str(exc))
        cam = None
        if self.grad_cam.value:
            cam = overlay(*grad_cam(self.predictor.model, self.predictor.preprocess(rgb)[0]))
        return result_html(prediction, rgb, cam)

    def classify_files(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Classify several files and show their cards, newest batch on top."""
        cards = [self.classify(name, data) for name, data in files]
        self.results.value = "".join(cards)

    def _on_upload(self, change) -> None:
        files = iter_uploads(change["new"])
        if not files:
            return
        self.classify_files(files)
        try:  # clear, so the same file can be uploaded again (ipywidgets 8)
            self.upload.value = ()
        except Exception:  # noqa: BLE001 - ipywidgets 7 cannot reset its value; harmless
            pass

    def _on_pick(self, change) -> None:
        index = change["new"]
        if index is None or index < 0:
            return
        record = self.samples[index]
        self.classify_files([(record.path.name, record.path.read_bytes())])
