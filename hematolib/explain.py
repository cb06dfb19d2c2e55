"""Grad-CAM: which part of the image drove a prediction."""

from __future__ import annotations

import numpy as np


def grad_cam(model, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of a kit model for one RGB image (H, W, 3) in 0..255 at the model's input size.

    Returns (view, heatmap): what the network saw (S, S, 3) (the crop around the cell, for
    cropping models) and float (S, S) in 0..1, the base's last convolutional features weighted by
    the gradient of the class score before softmax (the predicted class unless `class_index` is
    given). The score before softmax does not saturate when the model is sure, as a probability does.
    """
    import tensorflow as tf

    from .model import network_view, parts_of

    x = network_view(model, tf.convert_to_tensor(np.asarray(image, dtype=np.float32)[None]))
    parts = parts_of(model)
    dense = parts.head.layers[-1]
    with tf.GradientTape() as tape:
        conv = parts.base(parts.preprocess(x), training=False)  # (1, h, w, channels)
        tape.watch(conv)
        logits = tf.matmul(parts.pool(conv), dense.kernel) + dense.bias  # the dense layer before its softmax
        index = int(tf.argmax(logits[0])) if class_index is None else class_index
        score = logits[:, index]
    grads = tape.gradient(score, conv)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))[0]
    cam = cam / tf.maximum(tf.reduce_max(cam), 1e-12)  # 0..1, however small the scores
    view = x[0].numpy()
    return view, tf.image.resize(cam[..., None], view.shape[:2], method="bilinear")[..., 0].numpy()


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with a jet-coloured heatmap blended on top, uint8 (H, W, 3)."""
    from matplotlib import colormaps

    colored = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip((1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colored, 0, 255).astype(np.uint8)
