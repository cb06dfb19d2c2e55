"""Run a model: probabilities and scores for a list of records, and single images classified by a
saved model loaded once and reused (no retracing per call)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import CLASS_NAMES, default_model_path
from .data import ImageRecord, groups_of, labels_of
from .evaluate import Report, evaluate
from .images import decode_image, read_image
from .pipelines import make_pipeline

UNCERTAIN_BELOW = 0.6  # confidence under which a prediction is flagged "uncertain"


def predict_records(model, records: Sequence[ImageRecord], batch_size: int = 64,
                    verbose: int = 0) -> np.ndarray:
    """Class probabilities for every record, float (n, classes)."""
    from .model import input_size

    pipeline = make_pipeline(records, input_size(model), batch_size=batch_size, cache=False)
    return np.asarray(model.predict(pipeline, verbose=verbose))


def evaluate_records(model, records: Sequence[ImageRecord], split: str, **kwargs
                     ) -> tuple[Report, np.ndarray]:
    """Predict and evaluate (`evaluate.evaluate`) in one step; returns (report, probabilities (n, classes))."""
    probs = predict_records(model, records)
    return evaluate(probs, labels_of(records), groups_of(records), split=split, **kwargs), probs


def robustness(model, records: Sequence[ImageRecord], shifts: dict[str, dict] | None = None,
               batch_size: int = 64) -> dict[str, float]:
    """Accuracy under each domain shift (stain hue, brightness, scale) of the whole image; see
    augment.shift."""
    from .augment import ROBUSTNESS_SHIFTS, shift
    from .model import input_size

    shifts = ROBUSTNESS_SHIFTS if shifts is None else shifts
    labels = labels_of(records)
    pipeline = make_pipeline(records, input_size(model), batch_size=batch_size, cache=True)
    result = {}
    for name, kwargs in shifts.items():
        preds = np.concatenate([np.asarray(model(shift(x, **kwargs), training=False)).argmax(axis=1)
                                for x, _ in pipeline])
        result[name] = float((preds == labels).mean())
    return result


@dataclass
class Prediction:
    """One image's result: the class, its confidence, all probabilities and how long it took."""

    name: str
    class_name: str
    confidence: float
    probabilities: dict[str, float]
    seconds: float
    notes: list[str] = field(default_factory=list)
    uncertain_below: float = UNCERTAIN_BELOW
    unfamiliar: bool = False  # its features lie far from every training cell's (`familiar`)

    @property
    def uncertain(self) -> bool:
        """True when the confidence is under the threshold: do not trust the label."""
        return self.confidence < self.uncertain_below

    def to_dict(self) -> dict:
        return {"image": self.name, "class": self.class_name, "confidence": self.confidence,
                "uncertain": self.uncertain, "unfamiliar": self.unfamiliar, "probabilities": self.probabilities,
                "seconds": self.seconds, "notes": self.notes}


class Predictor:
    """Wraps a kit model for single-image prediction; build once, call many times."""

    def __init__(self, model, class_names=CLASS_NAMES, uncertain_below: float = UNCERTAIN_BELOW,
                 info=None, familiarity=None):
        import keras
        import tensorflow as tf

        from .model import features_of, input_size, network_view

        self.model = model
        self.input_size = input_size(model)  # (height, width) the model takes
        self.class_names = tuple(class_names)
        self.uncertain_below = uncertain_below
        self.info = info
        self.familiarity = familiarity
        images = keras.Input((*self.input_size, 3))
        featurizer = keras.Model(images, features_of(model)(network_view(model, images)))
        spec = tf.TensorSpec((None, *self.input_size, 3), tf.float32)
        self._forward = tf.function(lambda x: (model(x, training=False), featurizer(x, training=False)),
                                    input_signature=[spec])
        self._forward(tf.zeros((1, *self.input_size, 3)))  # trace now, not on the first image

    @classmethod
    def from_file(cls, path: str | Path | None = None, **kwargs) -> "Predictor":
        """Load a saved model (default `config.default_model_path()`) with its metadata checks."""
        from . import familiar
        from .model_file import load

        path = path or default_model_path()
        model, info = load(path)
        return cls(model, info.class_names, info=info, familiarity=familiar.read(path), **kwargs)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Fit an RGB uint8 (H, W, 3) image to the model's frame as training did (`pipelines.fit_frame`):
        float32 (1, height, width, 3), 0..255."""
        import tensorflow as tf

        from .pipelines import fit_frame

        img = fit_frame(rgb[..., :3], self.input_size)[None]
        return tf.clip_by_value(tf.round(img), 0, 255).numpy().astype(np.float32)

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """Class probabilities of one RGB image, float (classes,)."""
        return self._forward(self.preprocess(rgb))[0].numpy()[0]

    def predict_array(self, rgb: np.ndarray, name: str = "image",
                      notes: list[str] | None = None) -> Prediction:
        """Classify one decoded RGB uint8 image (H, W, 3). The prediction notes when the image holds
        too little nucleus stain for a white cell (`locate.little_stain`)."""
        from .locate import stain_floor, stained_area

        start = time.perf_counter()
        probs, features = (t.numpy()[0] for t in self._forward(self.preprocess(rgb)))
        seconds = time.perf_counter() - start
        best = int(probs.argmax())
        notes = list(notes or [])
        stain = stained_area(rgb)
        if stain < stain_floor(rgb.shape):  # locate.little_stain, counting the stain once for the note too
            notes.append(f"{Path(name).name}: hardly any purple nucleus stain ({stain} pixels in "
                         f"{rgb.shape[1]}x{rgb.shape[0]}), so the white cell is probably cut off, missing or "
                         "too small to see, and the label is a guess.")
        unfamiliar = False
        if self.familiarity is not None:
            distance = float(self.familiarity.distance(features[None])[0])
            unfamiliar = distance > self.familiarity.threshold
            if unfamiliar:
                notes.append(f"{Path(name).name}: unlike the cells this model was trained on (distance {distance:.1f}; "
                             f"{self.familiarity.quantile:.0%} of its {self.familiarity.calibration} lie within "
                             f"{self.familiarity.threshold:.1f}). Another lab, stain or microscope, or not a "
                             "white cell: the label is not to be trusted.")
        return Prediction(name=name, class_name=self.class_names[best], confidence=float(probs[best]),
                          probabilities={c: float(p) for c, p in zip(self.class_names, probs)},
                          seconds=seconds, notes=notes, uncertain_below=self.uncertain_below,
                          unfamiliar=unfamiliar)

    def predict_bytes(self, data: bytes, name: str = "image") -> Prediction:
        """Decode and classify untrusted bytes; raises images.ImageDecodeError for bad input."""
        rgb, notes = decode_image(data, name=name)
        return self.predict_array(rgb, name, notes)

    def predict_file(self, path: str | Path) -> Prediction:
        """Read and classify an image file; raises images.ImageDecodeError for bad input."""
        rgb, notes = read_image(path)
        return self.predict_array(rgb, str(path), notes)
