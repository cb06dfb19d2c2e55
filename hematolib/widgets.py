"""The upload-and-classify widget: drop smear images (or pick a sample), see the cell type.

Works with ipywidgets 8 and 7 (which Colab runs); uploads are decoded in memory and never written
to disk. How an upload reaches Python is in `uploads`, the cards it shows in `widget_html`.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Iterable, Sequence

from .config import default_model_path, kaggle_model_path, two_labs_model_path
from .data import ImageRecord
from .images import MAX_FILE_BYTES, ImageDecodeError, decode_image
from .pbc import CREDIT
from .uploads import MESSAGE_OVERHEAD, files_v7, guard_html, message_limit, other_ways, uploaded_files
from .widget_html import STYLE, error_html, result_html


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
        self.model_file = Path(model_path) if model_path else None  # where the predictor's model was read from
        self.model_path = self.model_file or default_model_path()  # where a missing one is trained to
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
        self.widget = w.VBox([w.HTML(STYLE), w.HBox([self.upload, self.picker]), self.path_box, self.grad_cam,
                              self.status, self.train_button, self.results])
        self.widget.add_class("hv-app")
        self._show_model_state()

    @classmethod
    def from_model(cls, path: str | Path | None = None, samples: Sequence[ImageRecord] = (), **kwargs
                   ) -> "ClassifyApp":
        """An app with the model at `path` (default `config.default_model_path()`: the two-lab model
        when there is one, else the Kaggle lab's), or none if missing."""
        path = Path(path) if path else default_model_path()
        predictor, problem = None, None
        if path.exists():
            from .inference import Predictor
            from .model_file import ModelFileError

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
            two_labs = " Trained on two labs' cells (Kaggle, and PBC from Barcelona: Acevedo et al. 2020, CC BY 4.0)."
            one_lab = " Trained on one lab's cells (Kaggle): another lab's may score far lower (notebook 06)."
            labs = "" if info is None or info.synthetic_data else two_labs if CREDIT in info.credits else one_lab
            name = f" {html.escape(self.model_file.name)}" if self.model_file else ""
            self.status.value = (f"Model{name} ready "
                                 f"({'x'.join(map(str, self.predictor.input_size))} input;"
                                 f"{crop} loaded once).{labs} Upload smear images or pick a sample.{warn} "
                                 f"One upload carries up to {self.upload_limit / 1e6:.1f} MB here{colab}; "
                                 "for larger files type a path in the File path box.")
        else:
            quick = self.quick_model_path()
            if quick != self.model_path and quick.exists():  # the button loads it rather than training
                self.train_button.description = f"Use {quick.name} (one lab)"
                offer = f"or use the one-lab model saved at {html.escape(str(quick))}"
            else:
                where = "" if quick == self.model_path else f" (saved as {html.escape(str(quick))}: it sees one lab)"
                offer = f"or train a quick one here{where}"
            self.status.value = (f"<div class='hv-card hv-error'>No model at {html.escape(str(self.model_path))}. "
                                 f"Run notebooks 03 and 04 (and 06 for the two-lab model) to train one, {offer}.</div>")

    def quick_model_path(self) -> Path:
        """Where the train button saves: the model path, unless that has the two-lab model's name.
        A quick model sees the Kaggle lab alone, so it is then named as the Kaggle lab's model, in
        the same folder (and loaded from there if one is already saved)."""
        if self.model_path.name == two_labs_model_path().name:
            return self.model_path.with_name(kaggle_model_path().name)
        return self.model_path

    def train_quick_model(self) -> None:
        """Train the quick recipe, save it to `quick_model_path()` and start using it."""
        from .inference import Predictor
        from .recipe import load_or_train

        target = self.quick_model_path()
        self.status.value = (f"Loading {html.escape(target.name)}..." if target.exists()
                             else "Training a quick model... (about a minute on a laptop CPU)")
        self.train_button.disabled = True
        try:
            model, info = load_or_train(target)
            self.predictor = Predictor(model, info.class_names, info=info)
            self.model_file = self.model_path = target
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
        files = uploaded_files(change["new"])
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
        files = files_v7(metadata, data)
        if len(metadata) != len(data) or not files:
            return
        self._receive(files, missing=max(0, change["new"] - before - len(files)))

    def _on_pick(self, change) -> None:
        index = change["new"]
        if index is None or index < 0:
            return
        record = self.samples[index]
        self.classify_files([(record.path.name, record.path.read_bytes())])
