"""Images made for tests."""

from __future__ import annotations

import numpy as np

BACKGROUND, RED_CELL, NUCLEUS = (232, 214, 220), (222, 150, 162), (90, 40, 140)


def smear_with_nucleus(cy, cx, radius=18, size=(240, 320)):
    yy, xx = np.mgrid[: size[0], : size[1]]
    img = np.empty((*size, 3), np.uint8)
    img[:] = BACKGROUND
    for ry, rx in ((40, 40), (200, 290), (120, 60)):  # pink red cells: no stain
        img[(yy - ry) ** 2 + (xx - rx) ** 2 < 20 ** 2] = RED_CELL
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = NUCLEUS
    return img
