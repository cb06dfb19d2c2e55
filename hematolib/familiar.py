"""Say when an image is unlike anything the model was trained on: a distance from the training
cells' features, with its threshold calibrated on validation cells.

The distance is Mahalanobis's under a probabilistic PCA of the training features: how many
standard deviations an image's features lie from the training cells' along the top principal
directions, plus what lies outside them, measured against the little the training cells vary
there (another lab's images often differ in directions the training cells never moved in). The threshold is the distance that a share `quantile` of validation images stay
under, so by construction about 1 - quantile of new cells from the same labs are flagged.
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
    unfamiliar."""

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    residual_variance: float
    threshold: float
    quantile: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance (n,) of features (n, channels): in the principal components, and
        outside them against the residual variance."""
        centred = np.asarray(features, np.float64) - self.mean
        projected = centred @ self.components.T
        residual = centred - projected @ self.components
        return np.sqrt((projected ** 2 / self.variances).sum(axis=1)
                       + (residual ** 2).sum(axis=1) / self.residual_variance)

    def unfamiliar(self, features: np.ndarray) -> np.ndarray:
        """Whether each image's features lie farther than any but 1 - quantile of validation images'."""
        return self.distance(features) > self.threshold

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, components=self.components, variances=self.variances,
                 residual_variance=self.residual_variance, threshold=self.threshold, quantile=self.quantile)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Familiarity":
        with np.load(io.BytesIO(data)) as store:
            return cls(store["mean"], store["components"], store["variances"], float(store["residual_variance"]),
                       float(store["threshold"]), float(store["quantile"]))


def fit(train_features: np.ndarray, val_features: np.ndarray, components: int = 32,
        quantile: float = 0.95) -> Familiarity:
    """Familiarity from training features (n, channels), its threshold from validation features."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile is the share of validation images to accept, between 0 and 1; got {quantile}.")
    if len(val_features) < 10:
        raise ValueError(f"calibrating the threshold needs at least 10 validation images; got {len(val_features)}.")
    x = np.asarray(train_features, np.float64)
    mean = x.mean(axis=0)
    _, singular, directions = np.linalg.svd(x - mean, full_matrices=False)
    k = min(components, len(singular))
    spread = singular ** 2 / max(len(x) - 1, 1)
    variances = np.maximum(spread[:k], 1e-12)
    residual = max(float(spread[k:].sum()) / max(x.shape[1] - k, 1), 1e-12)
    partial = Familiarity(mean, directions[:k], variances, residual, np.inf, quantile)
    partial.threshold = float(np.quantile(partial.distance(val_features), quantile))
    return partial


def of_model(model, train, val, **kwargs) -> Familiarity:
    """Familiarity of a kit model's features over its training and validation records."""
    from . import cache

    return fit(cache.features(model, train), cache.features(model, val), **kwargs)


def read(path) -> Familiarity | None:
    """The familiarity stored in a saved model, or None if it has none."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        if ENTRY not in archive.namelist():
            return None
        return Familiarity.from_bytes(archive.read(ENTRY))
