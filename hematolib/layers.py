"""The kit's own Keras layers: the white-cell crop, the four-view average, and a training-only
colour jitter per channel.

Registered with Keras's serialisation (package "hematolib"), so a saved model that uses them
loads with `keras.models.load_model` once this module is imported (`hl.model_file.load` imports it).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from .locate import crop_cell


@keras.saving.register_keras_serializable(package="hematolib")
class CellCrop(keras.layers.Layer):
    """Smears (batch, H, W, 3), RGB 0..255 -> (batch, size, size, 3): each image cropped around its
    white cell (`hematolib.locate.crop_cell`) and resized, rounded to whole values."""

    def __init__(self, size: int, **kwargs):
        kwargs.setdefault("name", "cell_crop")
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, images):
        def one(image):
            # plain bilinear: the crop shrinks by 1.5x at most, and it converts to TFLite;
            # rounded to whole values, so the crops cached for training equal these exactly
            return tf.round(tf.image.resize(crop_cell(image), (self.size, self.size)))

        spec = tf.TensorSpec((self.size, self.size, 3), tf.float32)
        return tf.map_fn(one, tf.cast(images, tf.float32), fn_output_signature=spec)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="hematolib")
class FlipStack(keras.layers.Layer):
    """(batch, S, S, 3) -> (4 x batch, S, S, 3): the images as they are, mirrored, upside down, and both."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "flip_stack")
        super().__init__(**kwargs)

    def call(self, x):
        mirrored, upside_down = ops.flip(x, axis=2), ops.flip(x, axis=1)
        return ops.concatenate([x, mirrored, upside_down, ops.flip(mirrored, axis=1)], axis=0)

    def compute_output_shape(self, shape):
        return (None if shape[0] is None else 4 * shape[0], *shape[1:])


@keras.saving.register_keras_serializable(package="hematolib")
class FlipMean(keras.layers.Layer):
    """(4 x batch, classes) -> (batch, classes): the mean prediction over each image's four views."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "flip_mean")
        super().__init__(**kwargs)

    def call(self, probs):
        return ops.mean(ops.reshape(probs, (4, -1, probs.shape[-1])), axis=0)

    def compute_output_shape(self, shape):
        return (None if shape[0] is None else shape[0] // 4, shape[-1])


@keras.saving.register_keras_serializable(package="hematolib")
class ChannelJitter(keras.layers.Layer):
    """Random colour per channel, in training only: images (batch, H, W, 3), RGB 0..255, each
    channel's deviation from the image's mean in it scaled by a factor drawn from 1 - gain to
    1 + gain, then shifted by a level drawn from -shift to +shift; clipped to 0..255."""

    def __init__(self, gain: float = 0.3, shift: float = 25.0, seed: int | None = None, **kwargs):
        kwargs.setdefault("name", "channel_jitter")
        super().__init__(**kwargs)
        self.gain, self.shift, self.seed = float(gain), float(shift), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        per_channel = (ops.shape(images)[0], 1, 1, 3)
        gain = keras.random.uniform(per_channel, 1 - self.gain, 1 + self.gain, seed=self.seed_generator)
        shift = keras.random.uniform(per_channel, -self.shift, self.shift, seed=self.seed_generator)
        mean = ops.mean(images, axis=(1, 2), keepdims=True)
        return ops.clip((images - mean) * gain + mean + shift, 0.0, 255.0)

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "gain": self.gain, "shift": self.shift, "seed": self.seed}
