"""The two training stages of the kit's recipe, as notebooks 03 and 04 write them in Keras:
the head on cached frozen features, then fine-tuning the base with a warm-up and cosine schedule."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import keras
import numpy as np

from . import cache
from .config import Config
from .data import ImageRecord, labels_of
from .model import base_of, head_of, input_size, is_cropping, network_of, unfreeze
from .pipelines import array_pipeline, make_pipeline


@dataclass
class History:
    """Per-epoch metrics of one training stage, like keras.callbacks.History.history."""

    stage: str
    metrics: dict[str, list[float]] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.metrics.get("loss", []))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic: call it once, at
    the start of a run (a notebook's first cell, the CLI), so a rerun gives the same numbers."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class Progress(keras.callbacks.Callback):
    """Prints a training stage's epochs: its metrics and the time left, at most every `every` seconds
    (and always the first and last epoch)."""

    def __init__(self, stage: str, every: float = 10.0):
        super().__init__()
        self.stage, self.every = stage, every

    def on_train_begin(self, logs=None):
        self.start = self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now, epochs = time.perf_counter(), self.params.get("epochs", epoch + 1)
        if epoch and epoch + 1 < epochs and now - self.last < self.every:
            return
        self.last = now
        per_epoch = (now - self.start) / (epoch + 1)
        shown = "  ".join(f"{k} {v:.3f}" for k, v in (logs or {}).items() if "loss" in k or "accuracy" in k)
        print(f"{self.stage}: epoch {epoch + 1}/{epochs}  {shown}  {per_epoch:.1f} s/epoch, "
              f"{duration(per_epoch * (epochs - epoch - 1))} left", flush=True)


def duration(seconds: float) -> str:
    """'45 s' or '12 min' or '1 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def class_weights(labels: np.ndarray, num_classes: int = 4) -> dict[int, float]:
    """Weights that make every class count equally in the loss (n / (k * n_class))."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {c: float(len(labels) / (num_classes * n)) if n else 0.0 for c, n in enumerate(counts)}


def loss(config: Config):
    """Cross-entropy on one-hot targets, smoothed by `config.label_smoothing`."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


def fit_head(model, train: Sequence[ImageRecord], val: Sequence[ImageRecord], config: Config,
             cache_features: bool = True, verbose: int = 1, callbacks: Sequence = ()) -> History:
    """Train only the head, on the frozen base's features (`cache.features`: computed once, then
    read from disk), for `config.head_epochs`; the model shares the head, so it is trained too."""
    k = len(config.class_names)
    y_train = labels_of(train)
    x_train = cache.features(model, train, cache=cache_features)
    validation = None
    if val:
        validation = (cache.features(model, val, cache=cache_features),
                      keras.utils.to_categorical(labels_of(val), k))
    head = head_of(model)
    head.compile(optimizer=keras.optimizers.Adam(config.head_learning_rate), loss=loss(config),
                 metrics=["accuracy"])
    fit = head.fit(x_train, keras.utils.to_categorical(y_train, k), validation_data=validation,
                   epochs=config.head_epochs, batch_size=config.batch_size, class_weight=class_weights(y_train, k),
                   callbacks=[*([Progress("head")] if verbose else []), *callbacks], verbose=0)
    return History("head", fit.history)


def fine_tune_schedule(config: Config, n_train: int):
    """The learning rate per step for `n_train` training images: a linear rise from zero over
    `config.warmup_epochs` (at most half the steps), then a cosine decay to zero at the last step."""
    per_epoch = math.ceil(n_train / config.batch_size)
    steps = config.fine_tune_epochs * per_epoch
    warmup = min(round(config.warmup_epochs * per_epoch), steps // 2)
    peak = config.fine_tune_learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak, decay_steps=steps - warmup, alpha=0.0,
        warmup_target=peak if warmup else None, warmup_steps=warmup)


def pipeline(model, records: Sequence[ImageRecord], config: Config, shuffle: bool = False):
    """(images, one-hot targets) batches of what the model's network sees: cached cell crops for a
    cropping model (no JPEG decoding or cell finding per epoch), else the resized images."""
    k = len(config.class_names)
    if is_cropping(model):
        cells = cache.crops(records, int(base_of(model).input_shape[1]))
        return array_pipeline(cells, keras.utils.to_categorical(labels_of(records), k), config.batch_size,
                              shuffle=shuffle, seed=config.seed)
    ds = make_pipeline(records, input_size(model), config.batch_size, shuffle=shuffle, seed=config.seed)
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, k)))


def fine_tune(model, train: Sequence[ImageRecord], val: Sequence[ImageRecord], config: Config,
              augment: Callable | None = None, verbose: int = 1, callbacks: Sequence = ()) -> History:
    """Unfreeze the base (its top `config.fine_tune_layers` layers, or all of it; BatchNorm stays
    frozen), compile again at the fine-tuning rate (`fine_tune_schedule`) and train end to end,
    the random `augment` layers in front; the last epoch is kept. `val` may be empty (a refit)."""
    network = network_of(model)
    unfreeze(base_of(model), config.fine_tune_layers)
    trainer = network if augment is None else keras.Sequential([augment, network], name="trainer")
    trainer.compile(optimizer=keras.optimizers.Adam(fine_tune_schedule(config, len(train))),
                    loss=loss(config), metrics=["accuracy"])
    fit = trainer.fit(pipeline(model, train, config, shuffle=True),
                      validation_data=pipeline(model, val, config) if val else None,
                      epochs=config.fine_tune_epochs, shuffle=False,
                      class_weight=class_weights(labels_of(train), len(config.class_names)),
                      callbacks=[*([Progress("fine-tuning")] if verbose else []), *callbacks], verbose=0)
    return History("fine_tune", fit.history)
