"""Images reach the model's frame with their shape kept: a round cell from a square camera stays round."""

from __future__ import annotations

import numpy as np
import pytest

from hematolib.pipelines import fit_frame

FRAME = (240, 320)


def disc(h: int, w: int, radius: int) -> np.ndarray:
    """A pale image (h, w, 3) with a dark disc in its centre."""
    y, x = np.mgrid[:h, :w]
    image = np.full((h, w, 3), 220, np.uint8)
    image[(y - h / 2) ** 2 + (x - w / 2) ** 2 < radius ** 2] = 40
    return image


def extent(image: np.ndarray) -> tuple[int, int]:
    """Height and width of the dark region."""
    dark = np.asarray(image)[..., 0] < 130
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def test_a_smear_in_the_frames_shape_is_only_resized():
    import tensorflow as tf

    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert np.array_equal(fit_frame(image, FRAME).numpy(), tf.image.resize(image, FRAME, antialias=True).numpy())


@pytest.mark.parametrize("shape", [(363, 360), (400, 200), (200, 600)], ids=["square", "tall", "wide"])
def test_a_round_cell_stays_round_in_any_cameras_frame(shape):
    fitted = fit_frame(disc(*shape, radius=min(shape) // 4), FRAME).numpy()
    assert fitted.shape == (*FRAME, 3) and fitted.dtype == np.float32
    h, w = extent(fitted)
    assert abs(h - w) <= 2, f"a disc of a {shape} image became {h}x{w}"


def test_a_plain_resize_would_squash_it():   # what the check above guards against
    import tensorflow as tf

    h, w = extent(tf.image.resize(disc(363, 360, radius=90), FRAME, antialias=True).numpy())
    assert w - h > 20


def test_a_strip_far_from_the_frames_shape_still_fits():
    fitted = fit_frame(disc(20, 900, radius=8), FRAME).numpy()
    assert fitted.shape == (*FRAME, 3) and np.isfinite(fitted).all() and 0 <= fitted.min() <= fitted.max() <= 255
