"""Find the original photograph behind every image of the Kaggle blood-cells dataset.

Writes `hematolib/originals.csv`, which `hematolib.data` reads to group images by cell.

Why this exists: the `<i>` in Kaggle's `_<i>_<rand>.jpeg` names is *not* the original cell. The
augmented images were saved by `ImageDataGenerator.flow(samples, batch_size=1, save_to_dir=...)`
with shuffling on, and Keras 2.0 named each file after its position in the shuffled epoch, so the
images called `_0_...` show about 30 different cells (look at them). What does identify the cell is
the picture itself. This tool

1. rebuilds the original project's split of the 348 BCCD photographs (its `augment_data.ipynb`:
   single-label rows of labels.csv, `train_test_split(test_size=0.2, random_state=10)`), so each
   image has a short list of candidates (its split and class: 16 to 158 photographs);
2. matches each image to its candidates by ORB keypoints and a RANSAC affine fit (the
   augmentation rotated, sheared, zoomed and flipped them) and assigns images to originals
   maximising the inliers, at most as many per original as one pass per original allows;
3. merges photographs that show the same part of a slide again (pairs of originals with at least
   `--same-scene` inliers between them), since a cell photographed twice is one cell.

Checks it prints: every original is used, and per split and class the images per original are
as even as the generator made them (it visits every original once per pass).

Maintainers only (needs the dataset with `dataset-master/` and `pip install opencv-python-headless
scikit-learn scipy`): `python tools/match_originals.py /path/to/blood-cells`.
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from hematolib.config import CLASS_NAMES
from hematolib.originals import write_originals

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "hematolib" / "originals.csv"
SIZE = (320, 240)  # the augmented images' size; originals were resized to it before augmenting


def original_split(root: Path) -> dict[tuple[str, str], list[str]]:
    """(split, class) -> candidate photographs, as the dataset's author split them."""
    from sklearn.model_selection import train_test_split

    have = {p.stem for p in (root / "dataset-master" / "JPEGImages").glob("*.jpg")}
    names, labels = [], []
    with open(root / "dataset-master" / "labels.csv", newline="") as f:
        for row in list(csv.reader(f))[1:]:
            label, name = row[2], f"BloodImage_{int(row[1]):05d}"
            # BloodImage_00280 is in the author's folder, not in Kaggle's: keep it for the split
            if label and "," not in label and (name in have or name == "BloodImage_00280"):
                names.append(name)
                labels.append(label)
    tr, te, ytr, yte = train_test_split(np.array(names), np.array(labels), test_size=0.2, random_state=10)
    out = {}
    for split, xs, ys in (("TRAIN", tr, ytr), ("TEST", te, yte)):
        for c in CLASS_NAMES:
            out[split, c] = sorted(n for n in xs[ys == c] if n in have)
    return out


class Matcher:
    """ORB keypoints of the originals (as they are and mirrored) and an inlier count against them."""

    def __init__(self, root: Path):
        import cv2

        self.cv2, self.root = cv2, root
        self.orb = cv2.ORB_create(nfeatures=800)
        self.bf = cv2.BFMatcher(cv2.NORM_HAMMING)
        self._originals: dict[str, list] = {}

    def keypoints(self, gray: np.ndarray):
        found, desc = self.orb.detectAndCompute(gray, None)
        return np.float32([k.pt for k in found]), desc

    def original(self, name: str) -> list:
        if name not in self._originals:
            img = Image.open(self.root / "dataset-master" / "JPEGImages" / f"{name}.jpg")
            gray = np.asarray(img.convert("RGB").resize(SIZE, Image.BILINEAR).convert("L"))
            # ORB is rotation-invariant but not mirror-invariant; an upside-down flip is a
            # mirror plus a half turn, so two versions cover all four flips
            self._originals[name] = [self.keypoints(gray), self.keypoints(np.ascontiguousarray(gray[:, ::-1]))]
        return self._originals[name]

    def inliers(self, a, b) -> int:
        """Keypoint matches between two images that one affine map explains."""
        (pa, da), (pb, db) = a, b
        if da is None or db is None or len(da) < 2 or len(db) < 2:
            return 0
        pairs = self.bf.knnMatch(da, db, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
        if len(good) < 4:
            return 0
        _, mask = self.cv2.estimateAffine2D(pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]],
                                            ransacReprojThreshold=4.0)
        return int(mask.sum()) if mask is not None else 0

    def scores(self, path: Path, candidates: list[str]) -> list[int]:
        """Inliers of one image against each candidate original (best of the mirrored views)."""
        image = self.keypoints(np.asarray(Image.open(path).convert("L")))
        return [max(self.inliers(image, view) for view in self.original(c)) for c in candidates]


def assign(scores: np.ndarray, balanced: bool) -> np.ndarray:
    """Index of the original chosen for each image, from scores (images, originals).

    Balanced: the generator drew every original once per pass, so no original can have made more
    than ceil(images / originals) of them; an assignment under that cap (maximising the total
    inliers) stops photographs rich in keypoints from collecting other cells' images.
    """
    if not balanced:
        return scores.argmax(1)
    from scipy.optimize import linear_sum_assignment

    cap = -(-scores.shape[0] // scores.shape[1])
    rows, slots = linear_sum_assignment(-np.repeat(scores, cap, axis=1))
    chosen = np.empty(scores.shape[0], dtype=int)
    chosen[rows] = slots // cap
    return chosen


def same_scene_groups(matcher: Matcher, names: list[str], threshold: int) -> dict[str, str]:
    """Photograph -> its group's name (the smallest name among photographs of the same scene)."""
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for a, b in itertools.combinations(names, 2):
        score = max(matcher.inliers(matcher.original(a)[0], view) for view in matcher.original(b))
        if score >= threshold:
            print(f"same scene: {a} and {b} ({score} inliers)")
            ra, rb = sorted((find(a), find(b)))
            parent[rb] = ra
    return {n: find(n) for n in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the blood-cells folder (dataset2-master/, dataset-master/)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--same-scene", type=int, default=25,
                        help="inliers between two originals from which they count as one scene")
    args = parser.parse_args(argv)
    images = args.root / "dataset2-master" / "images"
    candidates = original_split(args.root)
    matcher = Matcher(args.root)
    rows = []
    for split in ("TRAIN", "TEST", "TEST_SIMPLE"):
        for c in CLASS_NAMES:
            pool = candidates["TEST" if split == "TEST_SIMPLE" else split, c]
            files = sorted((images / split / c).glob("*.jpeg"))
            scores = np.array([matcher.scores(f, pool) for f in files])
            # TEST_SIMPLE is one unaugmented copy per original (two of them twice): no cap there
            chosen = assign(scores, balanced=split != "TEST_SIMPLE")
            per_original = collections.Counter(chosen.tolist())
            moved = int((chosen != scores.argmax(1)).sum())
            print(f"{split}/{c}: {len(files)} images -> {len(per_original)} of {len(pool)} originals; "
                  f"images per original {min(per_original.values())}-{max(per_original.values())}; "
                  f"{moved} moved from their best match by the cap", flush=True)
            rows += [(f"{split}/{c}/{f.name}", f.stat().st_size, pool[k]) for f, k in zip(files, chosen)]
    used = sorted({o for _, _, o in rows})
    group = same_scene_groups(matcher, used, args.same_scene)
    write_originals(args.out, [(p, size, group[o]) for p, size, o in rows],
                    comment="The BCCD photograph (cell) behind each image of Kaggle's blood-cells dataset2-master;\n"
                            "photographs of the same scene share a name. Made by tools/match_originals.py.")
    print(f"wrote {args.out}: {len(rows)} images, {len(set(group.values()))} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
