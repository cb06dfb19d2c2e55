"""tf.data input pipelines: image files or in-memory arrays to batches the model trains on."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .data import ImageRecord

PREFETCH_BATCHES = 2  # batches a pipeline prepares ahead of the model
FRAMING = "border-pad-v1"  # how `fit_frame` brings an image to the model's frame; part of the cache keys


def parallel_calls() -> int:
    """Parallel calls for a tf.data map: one per CPU core."""
    return os.cpu_count() or 1


def finish_pipeline(ds, prefetch: bool = True):
    """`ds` prefetching `PREFETCH_BATCHES` if `prefetch`, with tf.data's autotuning off: fixed
    parallelism, and no autotuning thread for every iterator's end to wait for."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return (ds.prefetch(PREFETCH_BATCHES) if prefetch else ds).with_options(options)


def fit_frame(image, size: tuple[int, int]):
    """An RGB image (H, W, 3) in the model's frame `size` (height, width), float32 0..255, its shape
    kept: padded to the frame's aspect ratio with the mean colour of its border (the smear's
    background, as a rule), then resized. Cells stay round whatever the camera's frame; a 320x240
    smear is only resized."""
    import tensorflow as tf

    x = tf.cast(image, tf.float32)
    h, w = tf.shape(x)[0], tf.shape(x)[1]
    frame_h, frame_w = size
    pad_h = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * frame_h / frame_w), tf.int32) - h, 0)
    pad_w = tf.maximum(tf.cast(tf.round(tf.cast(h, tf.float32) * frame_w / frame_h), tf.int32) - w, 0)
    colour = tf.reduce_mean(tf.concat([x[0], x[-1], x[:, 0], x[:, -1]], axis=0), axis=0)
    padding = [[pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]]
    outside = 1.0 - tf.pad(tf.ones_like(x[..., :1]), padding)   # 1 on the added margin only
    return tf.image.resize(tf.pad(x, padding) + outside * colour, size, antialias=True)


def make_pipeline(records: Sequence[ImageRecord], image_size: int | tuple[int, int], batch_size: int = 32,
                  shuffle: bool = False, seed: int = 0, cache: bool = True, prefetch: bool = True):
    """A tf.data pipeline of (images, labels) batches.

    images: float32 (batch, height, width, 3) in 0..255 RGB, where image_size is a side or
    (height, width), each image fitted with `fit_frame` (MobileNetV2's own preprocessing to -1..1,
    and any crop, are layers of the kit's models); labels: int32 (batch,).
    Decoded, resized images are cached in memory as uint8 so later epochs skip JPEG decoding.
    Augmentation belongs in the training step (see `train.fine_tune`), not here.
    """
    import tensorflow as tf

    if not records:
        raise ValueError("make_pipeline got no images; check the split and the per-class cap.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    paths = [str(r.path) for r in records]
    labels = np.array([r.label for r in records], dtype=np.int32)

    def load(path, label):
        raw = tf.io.read_file(path)
        img = tf.io.decode_image(raw, channels=3, expand_animations=False)
        img = fit_frame(img, size)
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(load, num_parallel_calls=parallel_calls() if prefetch else None)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=parallel_calls())
    return finish_pipeline(ds, prefetch)


def array_pipeline(images: np.ndarray, targets: np.ndarray, batch_size: int = 32, shuffle: bool = False,
                   seed: int = 0):
    """A tf.data pipeline of (float32 images 0..255, targets) batches from in-memory uint8 images
    (batch, S, S, 3), reshuffled each epoch with `shuffle`. Augmentation belongs in the model."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=parallel_calls())
    return finish_pipeline(ds)


def time_pipeline(records: Sequence[ImageRecord], image_size: int, epochs: int = 2, **kwargs
                  ) -> list[float]:
    """Seconds per pass over a pipeline built with `make_pipeline(**kwargs)`; shows what caching buys."""
    import time

    pipeline = make_pipeline(records, image_size, **kwargs)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in pipeline:
            pass
        times.append(time.perf_counter() - start)
    return times
