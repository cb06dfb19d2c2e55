"""Say when an image is unlike anything the model was trained on: a distance from the training
cells' features, with its threshold calibrated on validation cells.

The distance is Mahalanobis's under a probabilistic PCA of the training features: how many
standard deviations an image's features lie from the training cells' along the top principal
directions, plus what lies outside them, measured against the little the training cells vary
there (another lab's images often differ in directions the training cells never moved in). The
threshold is the distance that a share `quantile` of validation images stay under, so by
construction about 1 - quantile of new cells from the same labs are flagged. A model with no
validation cells (a refit) takes it from its own training cells instead, each fold of them
measured against the others (`cross_fit`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

ENTRY = "familiarity.npz"  # stored inside a kit model's .keras file, next to its metadata


@dataclass
class Familiarity:
    """The training features' mean (channels,), principal directions (k, channels), their variances
    (k,) and the variance per channel left outside them, and the distance above which an image is
    unfamiliar, and the images that distance was calibrated on (`calibration`)."""

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    quantile: float
    calibration: str = "validation cells"

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (n,) of features (n, channels): in the principal components, and
        outside them against the residual variance."""
        centred = np.asarray(features, np.float64) - self.mean
        projected = centred @ self.components.T
        residual = centred - projected @ self.components
        return np.sqrt((projected ** 2 / self.variances).sum(axis=1)
                       + (residual ** 2).sum(axis=1) / self.residual_variance)

    def unfamiliar(self, features: np.ndarray) -> np.ndarray:
        """Whether each image's features lie farther than all but 1 - quantile of the calibration images'."""
        return self.distance(features) > self.threshold

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, components=self.components, variances=self.variances,
                 residual_variance=self.residual_variance, threshold=self.threshold, quantile=self.quantile,
                 calibration=self.calibration)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Familiarity":
        with np.load(io.BytesIO(data)) as store:
            calibration = str(store["calibration"]) if "calibration" in store else "validation cells"
            return cls(store["mean"], store["components"], store["variances"], float(store["residual_variance"]),
                       float(store["threshold"]), float(store["quantile"]), calibration)


class TooFewToCalibrate(ValueError):
    """Too few images or cells to calibrate a threshold on; the message says how many there were."""


def as_extras(familiarity: Familiarity | None) -> dict[str, bytes] | None:
    """The entry to store `familiarity` in a saved model (`model_file.save(extras=...)`), or None."""
    return {ENTRY: familiarity.to_bytes()} if familiarity is not None else None


def _check(quantile: float, n_calibration: int, what: str = "validation images") -> None:
    if not 0 < quantile < 1:
        raise ValueError(f"quantile is the share of calibration images to accept, between 0 and 1; got {quantile}.")
    if n_calibration < 10:
        raise TooFewToCalibrate(f"calibrating the threshold needs at least 10 {what}; got {n_calibration}.")


def _directions(train_features: np.ndarray, components: int, quantile: float) -> Familiarity:
    """The training features' probabilistic PCA, with no threshold yet (infinite)."""
    x = np.asarray(train_features, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / max(len(x) - 1, 1)
    spread, directions = np.linalg.eigh(covariance)
    k = min(components, *x.shape)
    top = np.argsort(spread)[::-1][:k]
    variances = np.maximum(spread[top], 1e-12)
    residual = max((float(np.trace(covariance)) - float(spread[top].sum())) / max(x.shape[1] - k, 1), 1e-12)
    return Familiarity(mean, directions[:, top].T, variances, residual, np.inf, quantile)


def fit(train_features: np.ndarray, val_features: np.ndarray, components: int = 32,
        quantile: float = 0.95) -> Familiarity:
    """Familiarity from training features (n, channels), its threshold from validation features."""
    _check(quantile, len(val_features))
    familiarity = _directions(train_features, components, quantile)
    familiarity.threshold = float(np.quantile(familiarity.distance(val_features), quantile))
    return familiarity


def cross_fit(train_features: np.ndarray, originals, folds: int = 5, components: int = 32,
              quantile: float = 0.95, seed: int = 0) -> Familiarity:
    """Familiarity from training features (n, channels) alone, for a model with no validation cells.

    The cells (`originals`: the cell each image shows, as `ImageRecord.original`) are dealt into
    `folds` groups; each group's images are measured against the directions of the other groups'
    features, and the threshold is the `quantile` of all those distances, counted by image as `fit`
    counts validation images. The directions kept are those of every training image. Grouped by cell,
    so that no image is measured against copies of itself (images of one cell under different names
    would be, and the threshold would come out too low). On the kit's models it comes out higher
    than a validation-calibrated one, so fewer new cells are flagged (docs/second-lab.md).
    """
    originals = np.asarray(originals)
    if len(originals) != len(train_features):
        raise ValueError(f"one cell name per image: {len(originals)} names for {len(train_features)} images.")
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds; got {folds}.")
    names = np.unique(originals)
    _check(quantile, len(names), "cells")
    if len(names) < folds:
        raise TooFewToCalibrate(f"cross-fitting over {folds} folds needs at least {folds} cells; got {len(names)}.")
    fold_of = dict(zip(np.random.default_rng(seed).permutation(names), np.arange(len(names)) % folds))
    fold = np.array([fold_of[c] for c in originals])
    x = np.asarray(train_features, np.float64)
    distances = np.concatenate([_directions(x[fold != f], components, quantile).distance(x[fold == f])
                                for f in range(folds)])
    familiarity = _directions(x, components, quantile)
    familiarity.threshold = float(np.quantile(distances, quantile))
    familiarity.calibration = f"training cells (cross-fitted, {folds} folds)"
    return familiarity


def of_model(model, train, val, **kwargs) -> Familiarity:
    """Familiarity of a kit model's features over its training and validation records (`fit`); with
    no validation records (a refit), cross-fitted over the training cells (`cross_fit`). `kwargs` go
    to whichever of the two runs."""
    from . import cache

    if not val:
        return cross_fit(cache.features(model, train), [r.original for r in train], **kwargs)
    return fit(cache.features(model, train), cache.features(model, val), **kwargs)


def read(path) -> Familiarity | None:
    """The familiarity stored in a saved model, or None if it has none."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        if ENTRY not in archive.namelist():
            return None
        return Familiarity.from_bytes(archive.read(ENTRY))
