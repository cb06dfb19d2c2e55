"""Find the stained white cell in a smear image and crop around it (TensorFlow ops, graph-safe).

The nucleus of every white cell is stained dark purple: much more blue than green. Pink red cells
and the pale background have blue close to green. So the "stain map" blue - green, thresholded
and smoothed over a window about the size of a nucleus, peaks on the white cell. The crop box is
sized from the stained area, so a tight photo of one cell is not cut, and is kept inside the image.
"""

from __future__ import annotations

STAIN_THRESHOLD = 40.0  # blue - green, on 0..255, above which a pixel counts as nucleus stain
BOX_PER_NUCLEUS = 2.6  # crop side / sqrt(stained area)
MIN_BOX, MAX_BOX = 0.35, 1.0  # crop side limits, as fractions of the shorter image side


def settings_digest() -> str:
    """A short tag of the locator's settings: cached crops made with other settings are not reused."""
    import hashlib

    text = f"{STAIN_THRESHOLD}|{BOX_PER_NUCLEUS}|{MIN_BOX}|{MAX_BOX}|v1"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stain_map(image):
    """Nucleus stain per pixel, float32 (H, W): max(0, blue - green - threshold)."""
    import tensorflow as tf

    x = tf.cast(image, tf.float32)
    return tf.nn.relu(x[..., 2] - x[..., 1] - STAIN_THRESHOLD)


def stained_area(image) -> int:
    """Pixels of nucleus stain (as `stain_map` counts them) in an RGB image (H, W, 3): numpy, no graph."""
    import numpy as np

    x = np.asarray(image)
    return int((x[..., 2].astype(np.int16) - x[..., 1] > STAIN_THRESHOLD).sum())


def little_stain(image) -> bool:
    """True when an RGB image (H, W, 3) holds less nucleus stain than the smallest crop box is sized
    for (`stain_floor`): the white cell is probably cut off by the frame, missing, or too small to see."""
    import numpy as np

    return stained_area(image) < stain_floor(np.shape(image))


def stain_floor(shape) -> float:
    """The nucleus stain (`stained_area`, pixels) the smallest crop box is sized for, in an image of
    `shape` (H, W, ...): (MIN_BOX x the shorter side / BOX_PER_NUCLEUS) squared. `little_stain`'s line."""
    return (MIN_BOX * min(shape[:2]) / BOX_PER_NUCLEUS) ** 2


def locate_cell(image):
    """(centre row, centre column, box side) of the white cell in an RGB image (H, W, 3), int32.

    With no stained pixel at all, the centre of the image and the largest box.
    """
    import tensorflow as tf

    stain = stain_map(image)
    shape = tf.shape(stain)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)
    window = tf.maximum(3, short // 8) // 2 * 2 + 1  # odd, about a nucleus wide
    smooth = _box_blur(stain, window)
    flat = tf.argmax(tf.reshape(smooth, [-1]), output_type=tf.int32)
    found = tf.reduce_max(smooth) > 0
    cy = tf.where(found, flat // w, h // 2)
    cx = tf.where(found, flat % w, w // 2)
    area = tf.reduce_sum(tf.cast(stain > 0, tf.float32))
    short_f = tf.cast(short, tf.float32)
    side = tf.clip_by_value(BOX_PER_NUCLEUS * tf.sqrt(area), MIN_BOX * short_f, MAX_BOX * short_f)
    side = tf.where(found, tf.cast(side, tf.int32), short)
    # refine: the stain-weighted centroid within the box around the peak
    rows = tf.cast(tf.range(h), tf.float32)[:, None]
    cols = tf.cast(tf.range(w), tf.float32)[None, :]
    half = tf.cast(side, tf.float32) / 2
    near = (tf.abs(rows - tf.cast(cy, tf.float32)) <= half) & (tf.abs(cols - tf.cast(cx, tf.float32)) <= half)
    weight = tf.where(near, stain, 0.0)
    mass = tf.reduce_sum(weight)
    cy = tf.where(mass > 0, tf.cast(tf.round(tf.reduce_sum(weight * rows) / mass), tf.int32), cy)
    cx = tf.where(mass > 0, tf.cast(tf.round(tf.reduce_sum(weight * cols) / mass), tf.int32), cx)
    return cy, cx, side


def _box_blur(stain, window):
    """Mean of `stain` over a square `window` around every pixel (same size), via integral images."""
    import tensorflow as tf

    pad = window // 2
    padded = tf.pad(stain, [[pad + 1, pad], [pad + 1, pad]])
    integral = tf.cumsum(tf.cumsum(padded, axis=0), axis=1)
    h, w = tf.shape(stain)[0], tf.shape(stain)[1]
    total = (integral[window:window + h, window:window + w] - integral[:h, window:window + w]
             - integral[window:window + h, :w] + integral[:h, :w])
    return total / tf.cast(window * window, tf.float32)


def crop_cell(image):
    """The square crop around the white cell, same dtype as `image`, (side, side, 3)."""
    import tensorflow as tf

    cy, cx, side = locate_cell(image)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top = tf.clip_by_value(cy - side // 2, 0, h - side)
    left = tf.clip_by_value(cx - side // 2, 0, w - side)
    return tf.image.crop_to_bounding_box(image, top, left, side, side)
