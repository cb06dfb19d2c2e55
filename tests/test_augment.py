"""The training augmentation: random in training, the identity at prediction time."""

from __future__ import annotations

import pytest

import numpy as np

from hematolib import augment


pytestmark = pytest.mark.model

def test_augmentation_changes_images_in_training_only_and_repeats_with_its_seed():
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    once, again = (np.asarray(augment.make_augmenter(seed=3)(images, training=True)) for _ in range(2))
    assert not np.allclose(once, images)  # every image moved, recoloured or both
    np.testing.assert_array_equal(once, again)
    np.testing.assert_array_equal(np.asarray(augment.make_augmenter(seed=3)(images, training=False)), images)
    assert 0 <= once.min() and once.max() <= 255


def test_without_hue_the_stack_has_no_hue_layer():
    names = [type(layer).__name__ for layer in augment.make_augmenter(hue=0).layers]
    assert "RandomHue" not in names and "RandomFlip" in names
    assert "RandomHue" in [type(layer).__name__ for layer in augment.make_augmenter().layers]
