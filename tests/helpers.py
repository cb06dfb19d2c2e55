"""Images made for tests, and the kit's scripts (tools/, benchmarks/) loaded as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """A script of the project (not part of the package) loaded as a module, e.g. "tools/x.py"."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

BACKGROUND, RED_CELL, NUCLEUS = (232, 214, 220), (222, 150, 162), (90, 40, 140)


def smear_with_nucleus(cy, cx, radius=18, size=(240, 320)):
    yy, xx = np.mgrid[: size[0], : size[1]]
    img = np.empty((*size, 3), np.uint8)
    img[:] = BACKGROUND
    for ry, rx in ((40, 40), (200, 290), (120, 60)):  # pink red cells: no stain
        img[(yy - ry) ** 2 + (xx - rx) ** 2 < 20 ** 2] = RED_CELL
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = NUCLEUS
    return img
