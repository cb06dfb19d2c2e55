"""Train the kit's model: extract frozen features once (cached), fit the head, then fine-tune."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import Config, cache_dir
from .files import atomic_path
from .data import ImageRecord, finish_pipeline, labels_of, make_pipeline, parallel_calls
from .model import base_of, crops, feature_extractor, head_of, input_size, network_of, stain_normalises, unfreeze_top


@dataclass
class History:
    """Per-epoch metrics of one training stage, like keras.callbacks.History.history."""

    stage: str
    metrics: dict[str, list[float]] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.metrics.get("loss", []))

    def best(self, key: str = "val_accuracy") -> float:
        """The best value of `key` over the epochs (max for accuracy, min for loss)."""
        values = self.metrics[key]
        return min(values) if "loss" in key else max(values)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's CPU ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001 - older TF: seeding alone still helps
        pass


def _weights_digest(model) -> str:
    """A short hash of all the base's weights (about 45 ms), so cached features follow the weights
    they came from, whichever layers fine-tuning or recalibration changed."""
    h = hashlib.sha256()
    for w in base_of(model).weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def feature_store_path(model) -> Path:
    """The cache file of features computed with this model's base weights and preprocessing."""
    h, w = input_size(model)
    side = int(base_of(model).input_shape[1])
    crop = "_crop" if crops(model) else ""
    stain = "_stain" if stain_normalises(model) else ""
    return cache_dir() / "features" / f"{_weights_digest(model)}_{h}x{w}_{side}{crop}{stain}.npz"


def crop_store_path(model) -> Path:
    """The cache file of a cropping model's cell crops: they depend on the locator, not the weights."""
    from .locate import settings_digest

    h, w = input_size(model)
    side = int(base_of(model).input_shape[1])
    return cache_dir() / "crops" / f"{settings_digest()}_{h}x{w}_{side}.npz"


def _file_key(path: Path) -> str:
    """A store row's key: the image's absolute path, size and modification time (a changed file
    gets a new key)."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _mapped_member(path: Path, name: str) -> np.ndarray:
    """Array `name` of the .npz at `path`, memory-mapped rather than read, so that taking a few
    rows (TEST_SIMPLE's 71 crops, say) reads those rows, not the whole 1.5 GB store.

    np.savez stores its members uncompressed, so a member's .npy bytes sit whole inside the zip;
    anything else (a compressed member, say) is read into memory as np.load would.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as fh:
                return np.lib.format.read_array(fh)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the member's local header: its name and extra field precede the data
        if local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for {name}.npy")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"{name}.npy holds Python objects")
    if offset + dtype.itemsize * math.prod(shape) > path.stat().st_size:
        raise EOFError(f"{name}.npy is shorter than its header says")
    if not math.prod(shape):
        return np.empty(shape, dtype)  # nothing to map (an empty file cannot be mapped)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")


def _still_current(key: str) -> bool:
    """Whether the image a store row was computed from is still there, unchanged."""
    try:
        return _file_key(Path(key.rsplit("|", 2)[0])) == key
    except OSError:
        return False


def _stored(path: Path, records: Sequence[ImageRecord], compute: Callable[[list], np.ndarray],
            cache: bool) -> np.ndarray:
    """`compute(records)` row by row, kept per image file in the .npz at `path`.

    Rows of images already in the store are read back (memory-mapped: only those rows are read);
    only new images are computed, then the store is rewritten atomically (an interrupted run leaves
    the old store intact) without the rows of images changed or deleted since.
    """
    keys = [_file_key(r.path) for r in records]
    stored_keys, stored = [], None
    if cache and path.exists():
        try:
            with np.load(path) as store:
                stored_keys = store["keys"].tolist()
                name = "values" if "values" in store.files else "features"  # older kit versions
            stored = _mapped_member(path, name)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(f"{path}: the cache file is damaged ({type(exc).__name__}: {exc}); "
                          "computing it again.", stacklevel=3)
            stored_keys, stored = [], None
    index = {k: i for i, k in enumerate(stored_keys)}
    missing = {k: r for k, r in zip(keys, records) if k not in index}
    if missing:
        new = compute(list(missing.values()))
        # Rows of files changed or gone since they were stored are dropped: else the store grows by
        # a whole dataset each time one is copied or unpacked again. Indexing copies the kept rows
        # into memory, so the mapped file is closed before it is replaced (Windows refuses that).
        kept = [k for k in index if _still_current(k)]
        stored = np.concatenate([stored[[index[k] for k in kept]], new]) if kept else new
        index = {k: i for i, k in enumerate([*kept, *missing])}
        if cache:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, keys=np.array(list(index)), values=stored)
    return np.asarray(stored[[index[k] for k in keys]])  # a copy in memory: the mapped file closes


CHUNK = 1024  # images cropped per step: bounds the float32 memory of a step to about 300 MB at 160 px


def extract_crops(model, records: Sequence[ImageRecord], batch_size: int = 64, cache: bool = True,
                  verbose: int = 1) -> np.ndarray:
    """What a cropping model's network sees for every image: uint8 (n, S, S, 3) cell crops.

    Cropping is deterministic, so the crops are computed once and kept on disk; fine-tuning then
    trains on them instead of decoding and cropping every smear again in every epoch.
    """
    import keras

    def compute(recs):
        side = int(base_of(model).input_shape[1])
        out = np.empty((len(recs), side, side, 3), np.uint8)
        for i in range(0, len(recs), CHUNK):  # chunks: all of TRAIN as float32 would take 2 GB
            pipeline = make_pipeline(recs[i:i + CHUNK], input_size(model), batch_size=batch_size, cache=False)
            # whole values: CellCrop rounds
            out[i:i + CHUNK] = cropper.predict(pipeline, verbose=keras_verbose(verbose))
        return out

    if not crops(model):
        raise ValueError("extract_crops needs a model that crops around the cell (build(crop=True)).")
    cropper = keras.Model(model.inputs, model.get_layer("cell_crop").output, name="cropper")
    return _stored(crop_store_path(model), records, compute, cache)


def extract_features(model, records: Sequence[ImageRecord], batch_size: int = 64,
                     cache: bool = True, verbose: int = 1) -> np.ndarray:
    """Pooled base features of every image, float32 (n, channels).

    With `cache`, features are kept per image file on disk, so any later split or subset of
    the same images is read back instead of recomputed; only new images go through the network.
    A cropping model computes them from its cached crops.
    """
    def compute(recs):
        if crops(model):
            cells = extract_crops(model, recs, batch_size, cache=cache, verbose=verbose)
            pipeline = array_pipeline(cells, np.zeros(len(cells), np.int32), batch_size)  # cast per batch
            return network_of(model, pooled=True).predict(pipeline, verbose=keras_verbose(verbose)).astype(np.float32)
        pipeline = make_pipeline(recs, input_size(model), batch_size=batch_size, cache=False)
        return feature_extractor(model).predict(pipeline, verbose=keras_verbose(verbose)).astype(np.float32)

    return _stored(feature_store_path(model), records, compute, cache)


def recalibrate_batchnorm(model, records: Sequence[ImageRecord], max_images: int = 2048, batch_size: int = 64,
                          seed: int = 0) -> int:
    """Re-estimate the mean and variance of every BatchNorm layer of the base on `records` (AdaBN):
    the frozen base then normalises smears by their own statistics instead of ImageNet's.

    Up to `max_images` images (max_images / 4 per class, spread over the cells, seeded shuffle)
    go through the base in training mode, batch by batch, and each layer keeps the plain mean of
    its batch statistics. In training mode a layer normalises with its batch's statistics, so one
    pass is exact. Nothing else changes: gammas, betas, the convolutions, the head. Do it before
    the head trains: its features change. Returns the number of layers recalibrated.
    """
    import keras

    from .data import cap_per_class

    base = base_of(model)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    sample = cap_per_class(records, max(1, max_images // 4), seed)
    sample = [sample[i] for i in np.random.default_rng(seed).permutation(len(sample))]
    if crops(model):
        cells = extract_crops(model, sample, verbose=0)
        batches = (cells[i:i + batch_size] for i in range(0, len(cells), batch_size))
    else:
        batches = (x.numpy() for x, _ in make_pipeline(sample, input_size(model), batch_size=batch_size))
    preprocess = model.get_layer("mobilenetv2_preprocess")
    saved = [(layer.trainable, layer.momentum) for layer in norms]
    try:
        for layer in norms:
            layer.trainable = True  # Keras updates the statistics only of a trainable layer in training mode
        for k, batch in enumerate(batches):
            for layer in norms:
                layer.momentum = k / (k + 1)  # moving = the mean over batches 0..k
            base(preprocess(np.asarray(batch, np.float32)), training=True)
    finally:
        for layer, (trainable, momentum) in zip(norms, saved):
            layer.trainable, layer.momentum = trainable, momentum
    return len(norms)


PROGRESS_VARIABLE = "HEMATO_PROGRESS"  # "lines": Keras prints a line per epoch instead of a live bar


def keras_verbose(verbose: int) -> int:
    """Keras's `verbose` for the kit's: a live progress bar (1) becomes a line per epoch (2) when
    HEMATO_PROGRESS is "lines", as `make course` sets for the notebooks it executes; their saved
    copies would otherwise keep every redraw of every bar (thousands of outputs, megabytes)."""
    return 2 if verbose == 1 and os.environ.get(PROGRESS_VARIABLE) == "lines" else verbose


def array_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int = 32, shuffle: bool = False,
                   seed: int = 0):
    """A tf.data pipeline of (float32 images 0..255, labels) batches from in-memory uint8 images
    (augmentation belongs in the training step: see `fine_tune`)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=parallel_calls())
    return finish_pipeline(ds)


def _callbacks(patience: int, checkpoint: Path | None = None, validated: bool = True) -> list:
    """Early stopping and learning-rate reduction on validation loss, and the best epoch's
    checkpoint; none of them without validation (`validated=False`: a fixed schedule)."""
    import keras

    if not validated:
        return []
    cbs = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                         restore_best_weights=True),
           keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                             patience=max(1, patience // 2), min_lr=1e-6)]
    if checkpoint is not None:
        cbs.append(keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_loss",
                                                   save_best_only=True, save_weights_only=True))
    return cbs


def _loss(label_smoothing: float, one_hot: bool = False):
    import keras

    if label_smoothing or one_hot:
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def _targets(labels: np.ndarray, label_smoothing: float, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels] if label_smoothing else labels


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights that make every class count equally in the loss (n / (k * n_class))."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {c: float(len(labels) / (num_classes * n)) if n else 0.0 for c, n in enumerate(counts)}


def fit_head(model, train: Sequence[ImageRecord], val: Sequence[ImageRecord], config: Config,
             cache: bool = True, verbose: int = 1) -> History:
    """Train only the head on cached frozen features; the full `model` gets the trained head.

    Features are extracted once (a few minutes for all of TRAIN on a laptop CPU, then read from
    disk), so each epoch takes seconds. With the "plateau" schedule, training stops when validation
    loss stalls; with "cosine" (fixed, as when refitting on all of TRAIN) it runs all `config.head_epochs`.
    """
    import keras

    set_seed(config.seed)
    k = len(config.class_names)
    x_train = extract_features(model, train, cache=cache, verbose=verbose)
    y_train = labels_of(train)
    validation = None
    if val:
        validation = (extract_features(model, val, cache=cache, verbose=verbose),
                      _targets(labels_of(val), config.label_smoothing, k))
    head = head_of(model)
    metric = "categorical_accuracy" if config.label_smoothing else "sparse_categorical_accuracy"
    head.compile(optimizer=keras.optimizers.Adam(config.head_learning_rate),
                 loss=_loss(config.label_smoothing), metrics=[keras.metrics.get(metric)])
    fit = head.fit(x_train, _targets(y_train, config.label_smoothing, k), validation_data=validation,
                   epochs=config.head_epochs, batch_size=config.batch_size,
                   class_weight=class_weights(y_train, k), verbose=2 if verbose else 0,
                   callbacks=_callbacks(config.patience, validated=bool(val) and config.schedule == "plateau"))
    return History("head", _rename_accuracy(fit.history))


def fine_tune(model, train: Sequence[ImageRecord], val: Sequence[ImageRecord], config: Config,
              augment: Callable | None = None, verbose: int = 1, callbacks: Sequence = ()) -> History:
    """Unfreeze the base (its top `config.fine_tune_layers` layers, or all of it) and train end to
    end with a 10x lower learning rate.

    A cropping model trains on its stored cell crops (`extract_crops`), so no smear is decoded or
    cropped again per epoch. The random `augment` layers run in the training step, not in the
    input pipeline: there, op determinism (`set_seed`) would make tf.data run them one batch at a
    time, and a 2-core CPU trained about 1.5x slower. `config.schedule` "plateau" keeps the
    weights of the best validation epoch (restored at the end); "cosine" (`fine_tune_schedule`:
    after any warm-up) decays the learning rate to zero and keeps the last epoch, and works
    without validation records (`val` empty: training on all of TRAIN).
    callbacks: extra Keras callbacks (progress, snapshots). The model they see has the network's
    weights, in the network's order; with `augment`, it is the network behind the augmentation
    layers, which have no weights.
    """
    import keras

    set_seed(config.seed)
    unfreeze_top(model, config.fine_tune_layers)
    k = len(config.class_names)
    one_hot = bool(config.label_smoothing or config.mixup)  # targets as vectors, to smooth or blend
    cropping = crops(model)
    network = network_of(model)  # shares the weights: training it trains `model`

    def pipeline(records, shuffle):
        if cropping:  # cached crops: no JPEG decoding or cell finding per epoch
            ds = array_pipeline(extract_crops(model, records, verbose=verbose), labels_of(records).astype(np.int32),
                                config.batch_size, shuffle=shuffle, seed=config.seed)
        else:
            ds = make_pipeline(records, input_size(model), config.batch_size, shuffle=shuffle, seed=config.seed)
        if one_hot:
            ds = ds.map(lambda x, y: (x, _one_hot(y, k)))
        return mix_batches(ds, config.mixup, config.seed) if shuffle and config.mixup else ds  # training only

    plateau = config.schedule == "plateau"
    if plateau and not val:
        raise ValueError("The 'plateau' schedule needs validation records; use schedule='cosine' "
                         "to fine-tune on all of TRAIN.")
    rate = config.fine_tune_learning_rate if plateau else fine_tune_schedule(config, len(train))
    trained = network if augment is None else _behind(augment, network)
    optimizer = anchored_adam(rate, config.anchor_pull) if config.anchor_pull else keras.optimizers.Adam(rate)
    trained.compile(optimizer=optimizer,
                    loss=_loss(config.label_smoothing, one_hot), metrics=["accuracy"])
    with tempfile.TemporaryDirectory() as tmp:
        best = Path(tmp) / "best.weights.h5"
        fit = trained.fit(pipeline(train, True), validation_data=pipeline(val, False) if val else None,
                          epochs=config.fine_tune_epochs, verbose=keras_verbose(verbose), shuffle=False,
                          class_weight=class_weights(labels_of(train), k),
                          callbacks=_callbacks(config.patience, best, validated=plateau) + list(callbacks))
        if best.exists():
            trained.load_weights(best)
    return History("fine_tune", _rename_accuracy(fit.history))


def _behind(augment, network):
    """A model that applies the random `augment` layers (active in training only), then `network`,
    whose layers (and so weights) it shares."""
    import keras

    images = keras.Input(network.input_shape[1:], name="images")
    return keras.Model(images, network(augment(images)), name="augmented_" + network.name)


def fine_tune_schedule(config: Config, n_train: int):
    """The "cosine" schedule's learning rate per step for `n_train` training images: a linear rise
    from zero over `config.warmup_epochs` (if any; at most half the steps, for short runs), then a
    cosine decay to zero at the last step. Fixed in advance: no decision depends on validation."""
    import keras

    per_epoch = math.ceil(n_train / config.batch_size)
    steps = config.fine_tune_epochs * per_epoch
    warmup = min(round(config.warmup_epochs * per_epoch), steps // 2)
    peak = config.fine_tune_learning_rate
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else peak, decay_steps=steps - warmup, alpha=0.0,
        warmup_target=peak if warmup else None, warmup_steps=warmup)


def anchored_adam(rate, pull: float):
    """Adam with a pull towards where training began: before each step, every trained weight w
    moves `pull` x learning rate of the way back to its value when the optimizer was built
    (w -= pull * rate * (w - w_start)). L2-SP, applied apart from the gradient as AdamW applies
    weight decay, so Adam's scaling does not cancel it. `rate`: a number or a Keras schedule."""
    import keras
    import tensorflow as tf
    from keras import ops

    class AnchoredAdam(keras.optimizers.Adam):
        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self._anchors = [self.add_variable_from_reference(v, "anchor") for v in variables]
            # Keras may build the optimizer inside the traced training step, where an assign would
            # run at every step and drag the anchors along: copy the weights once, eagerly.
            with tf.init_scope():
                for anchor, variable in zip(self._anchors, variables):
                    anchor.assign(variable)

        def _apply_weight_decay(self, variables):
            step = ops.cast(self.learning_rate, "float32") * pull
            for variable in variables:
                anchor = self._anchors[self._get_variable_index(variable)]
                variable.assign(variable - ops.cast(step, variable.dtype) * (variable - anchor))

    return AnchoredAdam(rate)


def mix_batches(ds, concentration: float, seed: int):
    """`ds`'s batches of (images, one-hot targets), each image blended with another of its batch
    (the batch reversed) and its targets in the same proportion: mixup. The share of the image's
    own content is drawn per image from Beta(concentration, concentration), reproducibly for a
    seed and afresh each epoch. Labels must be one-hot (or smoothed) floats."""
    import tensorflow as tf

    def mix(batch, key):
        x, y = batch
        n = tf.shape(x)[0]
        a, b = (tf.random.stateless_gamma([n], key + i, alpha=concentration) for i in (0, 1))
        share = a / (a + b)
        x2, y2 = tf.reverse(x, [0]), tf.reverse(y, [0])
        return (share[:, None, None, None] * x + (1 - share[:, None, None, None]) * x2,
                share[:, None] * y + (1 - share[:, None]) * y2)

    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(ds, keys).map(mix)


def _one_hot(y, k: int):
    import tensorflow as tf

    return tf.one_hot(y, k)


def _rename_accuracy(history: dict) -> dict[str, list[float]]:
    """Keras names accuracy after the metric used; the kit always calls it `accuracy`."""
    out = {}
    for key, values in history.items():
        for long in ("sparse_categorical_accuracy", "categorical_accuracy"):
            key = key.replace(long, "accuracy")
        out[key] = [float(v) for v in values]
    return out
