"""The upload-and-classify widget: drop smear images (or pick a sample), see the cell type.

Works with ipywidgets 8 (the browser sends FileUpload.value: a tuple of dicts, content a
memoryview) and ipywidgets 7, which Colab still runs (the browser sends `_counter`, `metadata`
and `data`; `value` is a dict keyed by file name). Uploads are decoded in memory and never
written to disk.

An upload travels from the page to Python as one websocket message, and a message larger than
the server carries is dropped without a word (Jupyter and Voila: 10 MiB unless
`websocket_max_message_size` is set; Colab: 1 MB). The widget tells the page that limit: the
page refuses a larger upload with a message instead of sending it, and the widget offers a path
box and the command line for such files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .config import default_model_path
from .data import ImageRecord
from .images import MAX_FILE_BYTES, ImageDecodeError, decode_image

JUPYTER_MESSAGE_LIMIT = 10 * 1024 * 1024  # tornado's default websocket_max_message_size
COLAB_MESSAGE_LIMIT = 1_000_000  # Colab drops widget messages of 1 MB or more (ipywidgets issue 3452)
MESSAGE_OVERHEAD = 64 * 1024  # room for the JSON that travels with the file bytes
MESSAGE_LIMIT_ENV = "HEMATO_MESSAGE_LIMIT"  # bytes; set it to the server's websocket_max_message_size

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
.hv-results {flex-direction:column; align-items:stretch;}
</style>"""

# Runs in the page: refuses an upload larger than the limit on the upload button (class
# hv-limit-N) before the browser reads it, and shows the message HV_MESSAGE instead. FileUpload
# opens its own hidden <input type=file> with .click(), so the guard wraps that call and listens
# to the input's change event first (capture), ahead of the widget's own reader.
_GUARD_JS = """
(function () {
  if (window.hvUploadGuard) { return; }
  window.hvUploadGuard = true;
  var pending = null;
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest && event.target.closest(".hv-upload");
    if (button) { pending = button; setTimeout(function () { pending = null; }, 0); }
  }, true);
  var click = HTMLInputElement.prototype.click;
  HTMLInputElement.prototype.click = function () {
    if (pending && this.type === "file") {
      this.hvButton = pending;
      if (!this.hvGuarded) { this.hvGuarded = true; this.addEventListener("change", guard, true); }
    }
    return click.apply(this, arguments);
  };
  function limitOf(button) {
    var name = Array.prototype.find.call(button.classList, function (c) { return c.indexOf("hv-limit-") === 0; });
    return name ? Number(name.slice(9)) : 0;
  }
  function guard(event) {
    var input = event.currentTarget, button = input.hvButton;
    if (!button) { return; }
    var app = button.closest(".hv-app"), results = app && app.querySelector(".hv-results");
    var shown = results && results.querySelector(".widget-html-content");
    var old = app && app.querySelector(".hv-not-sent");
    if (old) { old.remove(); }
    var files = Array.prototype.slice.call(input.files || []), limit = limitOf(button);
    var total = files.reduce(function (sum, f) { return sum + f.size; }, 0);
    if (!limit || total <= limit) { return; }
    event.stopImmediatePropagation();
    input.value = "";
    var names = files.map(function (f) { return f.name; }).join(", ");
    var card = document.createElement("div");
    card.className = "hv-card hv-error hv-not-sent";
    var head = document.createElement("b");
    head.textContent = "Not sent: " + names;
    var text = document.createElement("div");
    text.textContent = HV_MESSAGE.replace("{size}", (total / 1e6).toFixed(1)).replace(/[{]name[}]/g, files[0].name);
    var box = document.createElement("div");
    box.appendChild(head); box.appendChild(text); card.appendChild(box);
    if (results) { results.insertBefore(card, results.firstChild); }
    else { button.parentNode.insertBefore(card, button.nextSibling); }
    if (shown && window.MutationObserver) {  // new cards from Python (the path box): the note goes
      var watch = new MutationObserver(function () { card.remove(); watch.disconnect(); });
      watch.observe(shown, {childList: true, subtree: true, characterData: true});
    }
  }
})();
"""


def message_limit() -> int:
    """Bytes one message from the page to Python can carry here: HEMATO_MESSAGE_LIMIT, Colab's or Jupyter's."""
    text = os.environ.get(MESSAGE_LIMIT_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value <= MESSAGE_OVERHEAD:
            raise ValueError(f"{MESSAGE_LIMIT_ENV}={text!r}: expected the server's websocket_max_message_size "
                             f"in bytes, more than {MESSAGE_OVERHEAD}, e.g. 67108864 for 64 MiB.")
        return value
    return COLAB_MESSAGE_LIMIT if "google.colab" in sys.modules else JUPYTER_MESSAGE_LIMIT


def other_ways(name: str) -> str:
    """How to classify a file that cannot be uploaded here: the path box or the command line."""
    if "google.colab" in sys.modules:
        return (f"Add it in Colab's Files panel, then type /content/{name} in the File path box below, or "
                f"run `!hematovision predict /content/{name}` in a cell.")
    return ("Type its path in the File path box below (the file is read on the machine that runs Python), "
            f"or run `hematovision predict {name}` in a terminal.")


def iter_uploads(value: Any) -> list[tuple[str, bytes]]:
    """(file name, bytes) for every file in a FileUpload value, ipywidgets 8 or 7 style."""
    return [(name, data) for name, data, _size in _uploaded(value)]


def _uploaded(value: Any) -> list[tuple[str, bytes, int]]:
    """(file name, bytes, size the browser reported) for every file in a FileUpload value."""
    if not value:
        return []
    if isinstance(value, dict):  # ipywidgets 7: {name: {"metadata": {...}, "content": bytes}}
        items = [(info.get("metadata", {}), name, info.get("content", b"")) for name, info in value.items()]
    else:  # ipywidgets 8: ({"name": ..., "size": ..., "content": memoryview, ...}, ...)
        items = [(f, "upload", f.get("content", b"")) for f in value]
    return [(str(meta.get("name", name)), bytes(content or b""), int(meta.get("size") or 0))
            for meta, name, content in items]


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


def guard_html(message: str) -> str:
    """The page script that refuses uploads over the button's limit, showing `message` ({size}, {name})."""
    quoted = json.dumps(message).replace("<", "\\u003c")
    return "<script>" + _GUARD_JS.replace("HV_MESSAGE", quoted) + "</script>"


class ClassifyApp:
    """The widget: FileUpload + sample picker + path box + Grad-CAM switch + result cards.

    `predictor` is an inference.Predictor (loaded once, reused for every image); with None the
    app explains how to get a model and offers a button that trains a quick one. `upload_limit`
    is the most one upload (all its files) may total, in bytes: by default what the page's
    connection carries (`message_limit()`) less room for the message around the files.
    """

    def __init__(self, predictor=None, samples: Sequence[ImageRecord] = (),
                 max_bytes: int = MAX_FILE_BYTES, model_path: str | Path | None = None,
                 upload_limit: int | None = None):
        import ipywidgets as w

        self.predictor = predictor
        self.samples = list(samples)
        self.max_bytes = max_bytes
        self.upload_limit = upload_limit if upload_limit is not None else message_limit() - MESSAGE_OVERHEAD
        self.model_path = Path(model_path) if model_path else default_model_path()
        self.upload = w.FileUpload(accept="image/*", multiple=True, description="Upload images")
        self.upload.add_class("hv-upload")
        self.upload.add_class(f"hv-limit-{self.upload_limit}")
        options = [("Pick a sample image...", -1)] + [
            (f"{r.class_name.title()}: {r.path.name}", i) for i, r in enumerate(self.samples)]
        self.picker = w.Dropdown(options=options, value=-1, description="Sample:")
        self.path_box = w.Text(description="File path:", continuous_update=False,
                               placeholder="for files too large to upload: type a path, press Enter",
                               layout=w.Layout(width="60%"))
        self.grad_cam = w.Checkbox(value=False, description="Show Grad-CAM (where the model looks)",
                                   indent=False, layout=w.Layout(width="auto"))
        self.status = w.HTML()
        self.results = w.HTML()
        self.results.add_class("hv-results")
        self.train_button = w.Button(description="Train a quick model (about a minute)",
                                     button_style="warning", layout=w.Layout(width="auto"))
        self.train_button.on_click(lambda _b: self.train_quick_model())
        if "_counter" in self.upload.trait_names():  # ipywidgets 7: see _on_upload_v7
            self.upload.observe(self._on_upload_v7, names="_counter")
        else:
            self.upload.observe(self._on_upload, names="value")
        self.picker.observe(self._on_pick, names="value")
        self.path_box.observe(self._on_path, names="value")
        self.widget = w.VBox([w.HTML(_STYLE), w.HBox([self.upload, self.picker]), self.path_box, self.grad_cam,
                              self.status, self.train_button, self.results])
        self.widget.add_class("hv-app")
        self._show_model_state()

    @classmethod
    def from_model(cls, path: str | Path | None = None, samples: Sequence[ImageRecord] = (), **kwargs
                   ) -> "ClassifyApp":
        """An app with the model at `path` (default models/hematovision.keras), or none if missing."""
        path = Path(path) if path else default_model_path()
        predictor, problem = None, None
        if path.exists():
            from .inference import Predictor
            from .model import ModelFileError

            try:
                predictor = Predictor.from_file(path)
            except ModelFileError as exc:
                problem = str(exc)
        app = cls(predictor, samples, model_path=path, **kwargs)
        if problem:
            app.status.value = error_html(path.name, problem)
        return app

    def _ipython_display_(self):
        from IPython.display import HTML, display

        display(self.widget)
        display(HTML(guard_html(self.too_large_message("{size}"))))

    def too_large_message(self, size_mb: str) -> str:
        """What the page says when an upload is over `upload_limit` (`size_mb`: the upload's size)."""
        colab = " (Colab drops larger uploads without a word)" if "google.colab" in sys.modules else ""
        return (f"{size_mb} MB in one upload; this page carries at most {self.upload_limit / 1e6:.1f} MB "
                f"at once{colab}, so nothing was sent. " + other_ways("{name}"))

    def _show_model_state(self) -> None:
        ready = self.predictor is not None
        self.train_button.layout.display = None if not ready else "none"
        for control in (self.upload, self.picker, self.path_box, self.grad_cam):
            control.disabled = not ready
        if ready:
            info = getattr(self.predictor, "info", None)
            warn = " <b>Trained on SYNTHETIC data: a demo only.</b>" if info and info.synthetic_data else ""
            crop = " crops around the white cell," if info and info.crop else ""
            colab = " (Colab's limit)" if "google.colab" in sys.modules else ""
            self.status.value = (f"Model ready ({'x'.join(map(str, self.predictor.input_size))} input;"
                                 f"{crop} loaded once). Upload smear images or pick a sample.{warn} "
                                 f"One upload carries up to {self.upload_limit / 1e6:.1f} MB here{colab}; "
                                 "for larger files type a path in the File path box.")
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
        if self.predictor is None:
            return error_html(name, "no model loaded yet.")
        try:
            rgb, notes = decode_image(data, name=Path(name).name, max_bytes=self.max_bytes)
            prediction = self.predictor.predict_array(rgb, name, notes)
        except ImageDecodeError as exc:
            return error_html(name, str(exc))
        cam = None
        if self.grad_cam.value:
            from .explain import grad_cam, overlay

            cam = overlay(*grad_cam(self.predictor.model, self.predictor.preprocess(rgb)[0]))
        return result_html(prediction, rgb, cam)

    def classify_files(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Classify several files and show their cards, newest batch on top."""
        cards = [self.classify(name, data) for name, data in files]
        self.results.value = "".join(cards)

    def classify_path(self, path: str | Path) -> bool:
        """Classify an image file on the machine that runs Python (the way in for files too large to
        upload); False, with an error card, when there is no such readable file."""
        text = str(path).strip().strip("'\"")
        file = Path(text).expanduser()
        name = file.name or text or "(no path)"
        try:
            if self.predictor is None:
                problem = "no model loaded yet."
            elif not text:
                problem = "no path given: type the path of an image file and press Enter."
            elif not file.is_file():
                where = " (on Colab, files added in the Files panel are in /content)" if "google.colab" in \
                    sys.modules else ""
                problem = (f"there is no file at {file}{where}. Check the path: it is read on the machine "
                           "that runs Python.")
            elif file.stat().st_size > self.max_bytes:
                problem = (f"the file is {file.stat().st_size / 1e6:.1f} MB; the limit is "
                           f"{self.max_bytes / 1e6:.1f} MB. Resize or crop it first.")
            else:
                self.classify_files([(file.name, file.read_bytes())])
                return True
        except OSError as exc:
            problem = f"cannot read {file}: {exc.strerror or exc}."
        self.results.value = error_html(name, problem)
        return False

    def _on_path(self, change) -> None:
        """Enter in the path box: classify the file, then empty the box (kept when the path is wrong)."""
        if change["new"].strip() and self.classify_path(change["new"]):
            self.path_box.value = ""

    def _receive(self, files: list[tuple[str, bytes, int]], missing: int = 0) -> None:
        """Show cards for uploaded files, saying which arrived empty and how many never arrived."""
        cards = []
        if missing:
            cards.append(error_html(f"{missing} earlier file{'s' * (missing > 1)}", (
                f"{'they' if missing > 1 else 'it'} never reached Python: the page dropped the upload, most "
                "likely because it was larger than the page carries (on Colab, 1 MB or more). "
                + other_ways("FILE"))))
        for name, data, size in files:
            if not data and size:
                cards.append(error_html(name, (
                    f"the upload arrived empty: 0 of its {size / 1e6:.1f} MB reached Python, so this page "
                    "cannot carry it (on Colab, uploads of 1 MB or more arrive empty or not at all). "
                    + other_ways(Path(name).name))))
            else:
                cards.append(self.classify(name, data))
        self.results.value = "".join(cards)

    def _on_upload(self, change) -> None:
        """ipywidgets 8: the browser sends `value`; cleared after use, so the same file again is a change."""
        files = _uploaded(change["new"])
        if not files:
            return
        try:
            self._receive(files)
        finally:
            self.upload.value = ()

    def _on_upload_v7(self, change) -> None:
        """ipywidgets 7: the browser raises `_counter` by the number of files with every upload.

        `value` cannot be cleared (read-only) and stays equal when the same file comes again, so
        it fires once only; `_counter` changes every time. When the browser resends a file it
        sent last time it may send only `_counter`, and `metadata` and `data` still hold the file.
        A counter that rose by more than the files here counts uploads that never arrived.
        """
        before = change["old"]
        metadata, data = list(self.upload.metadata), list(self.upload.data)
        files = [(str(m.get("name", "upload")), bytes(d or b""), int(m.get("size") or 0))
                 for m, d in zip(metadata, data)]
        if len(metadata) != len(data) or not files:
            return
        self._receive(files, missing=max(0, change["new"] - before - len(files)))

    def _on_pick(self, change) -> None:
        index = change["new"]
        if index is None or index < 0:
            return
        record = self.samples[index]
        self.classify_files([(record.path.name, record.path.read_bytes())])
