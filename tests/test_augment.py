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


def test_channel_jitter_moves_each_channel_on_its_own_within_its_ranges_in_training_only():
    from hematolib.layers import ChannelJitter

    rng = np.random.default_rng(0)
    images = rng.uniform(60, 190, (64, 16, 16, 3)).astype(np.float32)
    jittered = np.asarray(ChannelJitter(0.3, 25.0, seed=1)(images, training=True))
    moved = jittered.mean(axis=(1, 2)) - images.mean(axis=(1, 2))
    scaled = jittered.std(axis=(1, 2)) / images.std(axis=(1, 2))
    assert np.all(np.abs(moved) <= 25.0 + 1e-3) and np.all((scaled >= 0.7 - 1e-4) & (scaled <= 1.3 + 1e-4))
    assert np.abs(moved).max() > 15 and scaled.min() < 0.8 and scaled.max() > 1.2  # the ranges are used
    # each channel its own draw: a brightness or contrast change would move all three alike
    assert np.std(moved[:, 0] - moved[:, 1]) > 5 and np.std(scaled[:, 0] - scaled[:, 2]) > 0.05
    np.testing.assert_array_equal(np.asarray(ChannelJitter(seed=1)(images)), images)


def test_the_augmenter_jitters_channels_only_when_asked():
    names = [type(layer).__name__ for layer in augment.make_augmenter().layers]
    assert "ChannelJitter" not in names
    assert [type(layer).__name__ for layer in augment.make_augmenter(channel_jitter=True).layers][-1] == "ChannelJitter"
