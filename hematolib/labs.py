"""Two labs: the second lab's cells split for training, validation and test, each lab scored on
its own cells, colour matched or standardised across labs, and images that belong to no lab."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .data import ImageRecord, labels_of
from .splits import split_by_original


def split_cells(records: Sequence[ImageRecord], seed: int = 0
                ) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """A lab's records split by cell, stratified by class: 60% train, 20% validation, 20% test."""
    rest, test = split_by_original(records, 0.2, seed)
    train, val = split_by_original(rest, 0.25, seed)
    return train, val, test


def accuracy(head, features: np.ndarray, records: Sequence[ImageRecord]) -> float:
    """Share of `records` whose features (n, channels) `head` classifies right."""
    return float(np.mean(head.predict(features, verbose=0).argmax(axis=1) == labels_of(records)))


def colour_means(crops: np.ndarray) -> np.ndarray:
    """Mean R, G, B (3,) over all pixels of crops (n, S, S, 3)."""
    return np.asarray(crops, np.float64).reshape(-1, 3).mean(axis=0)


def match_colour(crops: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Crops (n, S, S, 3) with each crop's mean R, G, B moved to `reference` (3,), float32 0..255:
    the simplest colour normalisation between labs."""
    x = np.asarray(crops, np.float32)
    return np.clip(x - x.mean(axis=(1, 2), keepdims=True) + np.asarray(reference, np.float32), 0, 255)


def colour_spread(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The typical smear's colour: per channel, the mean over images (n, H, W, 3) of each image's
    mean and of its spread (standard deviation), each (3,)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1, 3)
    return x.mean(axis=1).mean(axis=0), x.std(axis=1).mean(axis=0)


def standardise_colour(images: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Images (n, H, W, 3) with each image's mean and spread per channel moved to `mean` and `spread`
    (3,) (`colour_spread` of another lab), float32 0..255: a stain normalisation over the whole smear."""
    x = np.asarray(images, np.float32)
    own_mean, own_spread = x.mean(axis=(1, 2), keepdims=True), x.std(axis=(1, 2), keepdims=True)
    moved = (x - own_mean) / np.maximum(own_spread, 1.0) * np.asarray(spread, np.float32) + np.asarray(mean, np.float32)
    return np.clip(moved, 0, 255)


def foreign_images(n: int = 8, seed: int = 0) -> Mapping[str, list[np.ndarray]]:
    """Images that belong to no lab, RGB uint8 (240, 320, 3) each: drawn smears (the kit's synthetic
    cells), noise, and flat colours."""
    from .config import CLASS_NAMES
    from .synthetic import draw_cell

    rng = np.random.default_rng(seed)
    drawn = [np.asarray(draw_cell(CLASS_NAMES[i % 4], rng)) for i in range(n)]
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(n)]
    flat = [np.full((240, 320, 3), rng.integers(0, 256, 3), np.uint8) for _ in range(n)]
    return {"drawn smears": drawn, "noise": noise, "flat colour": flat}


def image_features(model, images: Sequence[np.ndarray]) -> np.ndarray:
    """Pooled features (n, channels) of RGB images (H, W, 3) as a kit model sees them (fitted to its
    frame, then cropped if it crops)."""
    import tensorflow as tf

    from .model import features_of, input_size, network_view
    from .pipelines import fit_frame

    x = tf.stack([fit_frame(np.asarray(i, np.float32)[..., :3], input_size(model))
                  for i in images])  # each its own size
    return features_of(model).predict(network_view(model, tf.round(x)), verbose=0)
