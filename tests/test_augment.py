"""The training augmentation's random erasing: what an image looks like after it."""

from __future__ import annotations

import numpy as np
import pytest

from hematolib import augment

GREY = 128.0
ONLY_ERASING = dict(flip=False, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0, brightness=0.0, hue=0.0)


def erased(images, share: float, training: bool = True) -> np.ndarray:
    """Boolean (batch, H, W): the pixels `build(erasing=share)` changed in uniform grey images."""
    out = np.asarray(augment.build(erasing=share, seed=5, **ONLY_ERASING)(images, training=training))
    return (out != images).any(axis=-1)


def test_erasing_replaces_one_rectangle_of_2_to_33_percent_with_noise():
    images = np.full((24, 64, 64, 3), GREY, np.float32)
    changed = erased(images, 1.0)
    assert changed.any(axis=(1, 2)).all()  # every image, at a share of 1
    for mask in changed:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.mean() > 0.95  # one solid rectangle (noise may equal grey in a pixel or two)
        assert 0.015 <= box.size / mask.size <= 0.36
    sizes = [m.mean() for m in changed]
    assert max(sizes) > 2 * min(sizes)  # rectangles of different sizes


def test_erasing_touches_the_share_of_images_asked_and_none_outside_training():
    images = np.full((400, 16, 16, 3), GREY, np.float32)
    assert 0.4 < erased(images, 0.5).any(axis=(1, 2)).mean() < 0.6
    assert not erased(images, 1.0, training=False).any()
    assert not erased(images, 0.0).any()


def test_erasing_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="erasing is the share of images"):
        augment.build(erasing=1.5)
