"""A deterministic synthetic blood-smear dataset in the Kaggle layout, for tests and offline runs.

Each image shows pink red cells around one stained white cell whose nucleus tells the class:
bilobed with orange granules (eosinophil), large and round (lymphocyte), kidney-shaped
(monocyte) or multi-lobed (neutrophil). Like the real data, every "original" cell is drawn
once and then augmented (rotation, flip, shift). File names are `_<original>_<n>.jpeg`, and
`originals.csv` beside the splits says which cell each image shows, as the kit's table does for
the real data.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .config import CLASS_NAMES
from .originals import ORIGINALS_FILE, write_originals

_BACKGROUND = (232, 212, 218)
_NUCLEUS = (88, 38, 120)
_CYTOPLASM = {  # per class: cytoplasm colour
    "EOSINOPHIL": (236, 178, 160),
    "LYMPHOCYTE": (188, 178, 222),
    "MONOCYTE": (200, 190, 214),
    "NEUTROPHIL": (226, 202, 216),
}
_RADIUS = {"EOSINOPHIL": 0.13, "LYMPHOCYTE": 0.095, "MONOCYTE": 0.155, "NEUTROPHIL": 0.13}


def draw_cell(class_name: str, rng: np.random.Generator, size: tuple[int, int] = (320, 240)
              ) -> Image.Image:
    """Draw one original smear image of `class_name` (an RGB PIL image of `size`)."""
    w, h = size
    img = Image.new("RGB", size, _BACKGROUND)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(14, 24))):  # red cells: pale discs with lighter centres
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.07) * w
        tone = rng.integers(-12, 12)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(222 + tone, 150 + tone, 162 + tone),
                  outline=(200, 130, 145))
        d.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=(236, 186, 192))
    cx, cy = w / 2 + rng.uniform(-0.08, 0.08) * w, h / 2 + rng.uniform(-0.08, 0.08) * h
    R = _RADIUS[class_name] * w * rng.uniform(0.9, 1.1)
    d.ellipse([cx - R, cy - R, cx + R, cy + R], fill=_CYTOPLASM[class_name])
    angle = rng.uniform(0, 2 * np.pi)
    ux, uy = np.cos(angle), np.sin(angle)

    def disc(x: float, y: float, r: float, fill=_NUCLEUS) -> None:
        d.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    if class_name == "EOSINOPHIL":
        for _ in range(60):  # orange granules
            a, rr = rng.uniform(0, 2 * np.pi), R * np.sqrt(rng.uniform(0, 0.9))
            disc(cx + rr * np.cos(a), cy + rr * np.sin(a), R * 0.05, fill=(222, 110, 70))
        for s in (-1, 1):  # two lobes
            disc(cx + s * 0.42 * R * ux, cy + s * 0.42 * R * uy, 0.4 * R)
    elif class_name == "LYMPHOCYTE":
        disc(cx + 0.08 * R * ux, cy + 0.08 * R * uy, 0.82 * R)
    elif class_name == "MONOCYTE":
        disc(cx, cy, 0.62 * R)  # kidney: a disc with a bite of cytoplasm taken out
        disc(cx + 0.55 * R * ux, cy + 0.55 * R * uy, 0.38 * R, fill=_CYTOPLASM[class_name])
    else:  # NEUTROPHIL: 3-5 small lobes on an arc, joined by thin strands
        n = int(rng.integers(3, 6))
        pts = [(cx + 0.55 * R * np.cos(angle + k * 1.15), cy + 0.55 * R * np.sin(angle + k * 1.15))
               for k in range(n)]
        d.line(pts, fill=_NUCLEUS, width=max(1, int(R * 0.1)))
        for x, y in pts:
            disc(x, y, 0.24 * R)
    noise = rng.normal(0, 6, (h, w, 3))
    arr = np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.8))


def augment_cell(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One augmented copy: rotation up to 20 degrees, flips and a shift, as in the real data."""
    w, h = img.size
    out = img.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, fillcolor=_BACKGROUND,
                     translate=(rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h))
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_TOP_BOTTOM)
    return out


def make_synthetic_dataset(target: str | Path, originals: tuple[int, int] = (10, 4),
                           copies: int = 8, size: tuple[int, int] = (320, 240), seed: int = 0
                           ) -> Path:
    """Write a synthetic dataset to `target`/dataset2-master/images and return `target`.

    originals: original cells per class in (TRAIN, TEST); copies: augmented images per original.
    TEST_SIMPLE holds one un-augmented image per TEST original. Rebuilt only when the
    parameters changed; written to a temporary folder first, so it is never half-made.
    """
    target = Path(target)
    params = {"originals": list(originals), "copies": copies, "size": list(size), "seed": seed,
              "version": 2}
    marker = target / "SYNTHETIC.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
    try:
        images = tmp / "dataset2-master" / "images"
        table = []  # (path, bytes, original) for originals.csv
        for split_idx, split in enumerate(("TRAIN", "TEST")):
            for label, class_name in enumerate(CLASS_NAMES):
                out_dir = images / split / class_name
                out_dir.mkdir(parents=True)
                simple_dir = images / "TEST_SIMPLE" / class_name
                for orig in range(originals[split_idx]):
                    rng = np.random.default_rng([seed, split_idx, label, orig])
                    base = draw_cell(class_name, rng, size)
                    files = []
                    for k in range(copies):
                        files.append(out_dir / f"_{orig}_{1000 + k}.jpeg")
                        augment_cell(base, rng).save(files[-1], quality=92)
                    if split == "TEST":
                        simple_dir.mkdir(parents=True, exist_ok=True)
                        files.append(simple_dir / f"_{orig}_{k}.jpeg")
                        base.save(files[-1], quality=92)
                    table += [(f.relative_to(images).as_posix(), f.stat().st_size,
                               f"{split}/{class_name}/{orig}") for f in files]
        write_originals(images / ORIGINALS_FILE, table)
        (tmp / "SYNTHETIC.json").write_text(json.dumps(params))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
