"""Augmentation with Keras preprocessing layers, and controlled shifts for robustness checks."""

from __future__ import annotations

import numpy as np


CHANNEL_GAIN, CHANNEL_SHIFT = 0.3, 25.0  # the channel jitter of a model trained on one lab (Config.channel_jitter)


def make_augmenter(flip: bool = True, rotation: float = 20 / 360, zoom: float = 0.15, translation: float = 0.1,
                   contrast: float = 0.2, brightness: float = 0.15, hue: float = 0.04, seed: int | None = None,
                   channel_jitter: bool = False):
    """A keras.Sequential of random layers for float RGB images in 0..255, (batch, H, W, 3).

    rotation is a fraction of a full turn (20/360 = up to 20 degrees), as in keras.layers.RandomRotation.
    Stain colour differs between labs, so hue and brightness jitter matter as much as geometry.
    channel_jitter: last, each channel's colour moved on its own (`layers.ChannelJitter`, by
    CHANNEL_GAIN and CHANNEL_SHIFT), so that a model of one lab leans less on that lab's stain.
    seed: given to every layer as it is, so all the layers draw the same numbers and one draw sets
    all of an image's transforms; the kit's figures were measured so (docs/recipe-search.md, end).
    Seeding once instead (`keras.utils.set_random_seed`, no seed here) draws each layer apart.
    Active only when called with training=True.
    """
    import keras
    from keras import layers

    from .layers import ChannelJitter

    parts = [layers.RandomFlip("horizontal_and_vertical", seed=seed)] if flip else []
    parts += [layers.RandomRotation(rotation, fill_mode="reflect", seed=seed),
              layers.RandomZoom(zoom, fill_mode="reflect", seed=seed),
              layers.RandomTranslation(translation, translation, fill_mode="reflect", seed=seed),
              layers.RandomContrast(contrast, seed=seed),
              layers.RandomBrightness(brightness, value_range=(0, 255), seed=seed)]
    if hue:
        parts.append(layers.RandomHue(hue, value_range=(0, 255), seed=seed))
    if channel_jitter:
        parts.append(ChannelJitter(CHANNEL_GAIN, CHANNEL_SHIFT, seed=seed))
    return keras.Sequential(parts, name="augment")


def describe(augmenter) -> dict[str, dict]:
    """Each random layer of `augmenter` by its class, with its ranges and seed: what a saved model
    records of the augmentation it was fine-tuned through (`model_file.ModelInfo.augmentation`)."""
    plumbing = {"name", "trainable", "dtype", "data_format"}
    return {type(layer).__name__: {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in layer.get_config().items() if k not in plumbing}
            for layer in augmenter.layers}


def examples(augmenter, image: np.ndarray, n: int = 8) -> list[np.ndarray]:
    """`n` augmented versions of one RGB image (H, W, 3); the first is the original."""
    x = np.repeat(np.asarray(image, dtype=np.float32)[None], n - 1, axis=0)
    out = np.asarray(augmenter(x, training=True))
    return [np.asarray(image, dtype=np.float32)] + list(np.clip(out, 0, 255))


def shift(images, hue: float = 0.0, brightness: float = 0.0, scale: float = 1.0):
    """Deterministic domain shifts of a batch (batch, S, S, 3) of 0..255 floats.

    hue: fraction of the colour wheel to rotate (-0.5..0.5); brightness: added to every channel as
    a fraction of 255; scale > 1 zooms in (a tighter crop of the cell), < 1 zooms out (a smaller
    cell, edges padded by reflection).
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(images, tf.float32)
    size = tf.shape(x)[1:3]
    if hue:
        x = tf.image.adjust_hue(x / 255.0, hue) * 255.0
    if brightness:
        x = x + brightness * 255.0
    if scale > 1:
        x = tf.image.resize(tf.image.central_crop(x, 1 / scale), size)
    elif scale < 1:
        ph, pw = (int(round(int(n) * (1 / scale - 1) / 2)) for n in x.shape[1:3])
        x = tf.image.resize(tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]], mode="REFLECT"), size)
    return tf.clip_by_value(x, 0, 255)


ROBUSTNESS_SHIFTS: dict[str, dict] = {
    "none": {},
    "hue -0.05": {"hue": -0.05},
    "hue +0.05": {"hue": 0.05},
    "darker (-0.15)": {"brightness": -0.15},
    "brighter (+0.15)": {"brightness": 0.15},
    "zoom in x1.5": {"scale": 1.5},
    "zoom out x0.75": {"scale": 0.75},
}
