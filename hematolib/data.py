"""Find, check and list the blood-cell dataset: its images as records, by split, class and original cell."""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .config import CLASS_NAMES, PROJECT_DIR, SPLITS, env_path
from .errors import DataNotFoundError, DatasetLayoutError
from .images import IMAGE_SUFFIXES, full_check, quick_check
from .originals import ORIGINALS_FILE, known_originals, original_of, read_originals

_IGNORED_FILES = {"thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class ImageRecord:
    """One image: where it is, its class index, its split and the original cell it came from."""

    path: Path
    label: int
    split: str
    original: str  # the cell it shows, e.g. "BloodImage_00093" (see `original_of`)

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


@dataclass
class Dataset:
    """Every usable image of a dataset, by split, plus the files that were skipped and why."""

    root: Path
    images_dir: Path
    splits: dict[str, list[ImageRecord]]
    problems: list[tuple[Path, str]] = field(default_factory=list)
    synthetic: bool = False
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # same bytes, different splits

    @property
    def train(self) -> list[ImageRecord]:
        return self.splits.get("TRAIN", [])

    @property
    def test(self) -> list[ImageRecord]:
        return self.splits.get("TEST", [])

    @property
    def test_simple(self) -> list[ImageRecord]:
        return self.splits.get("TEST_SIMPLE", [])

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class: {"TRAIN": {"EOSINOPHIL": 2497, ...}, ...}."""
        return {s: count_by_class(recs) for s, recs in self.splits.items()}

    def original_counts(self) -> dict[str, dict[str, int]]:
        """Distinct original cells per split and class."""
        return {s: count_by_class(recs, distinct_originals=True) for s, recs in self.splits.items()}


def count_by_class(records: Iterable[ImageRecord], distinct_originals: bool = False) -> dict[str, int]:
    """Images (or distinct originals) per class name, every class present even at zero."""
    seen: dict[str, set] = {c: set() for c in CLASS_NAMES}
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for r in records:
        counts[r.class_name] += 1
        seen[r.class_name].add(r.original)
    return {c: len(seen[c]) for c in CLASS_NAMES} if distinct_originals else counts


def find_images_dir(root: Path) -> Path:
    """The folder that holds TRAIN/TEST/TEST_SIMPLE, accepting Kaggle's layouts.

    Accepts `root` itself, `root/images`, `root/dataset2-master/images` and Kaggle's doubled
    `root/dataset2-master/dataset2-master/images`.
    """
    root = Path(root)
    if not root.exists():
        raise DataNotFoundError(f"{root}: the dataset folder does not exist. {HOW_TO_GET_DATA}")
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: expected a dataset folder, found a file.")
    candidates = [root, root / "images", root / "dataset2-master" / "images",
                  root / "dataset2-master" / "dataset2-master" / "images"]
    for cand in candidates:
        if (cand / "TRAIN").is_dir() or (cand / "TEST").is_dir():
            return cand
    found = sorted(p.name for p in root.iterdir())[:10]
    raise DatasetLayoutError(
        f"{root}: expected dataset2-master/images/{{TRAIN,TEST,TEST_SIMPLE}}/<CLASS>/ "
        f"(the Kaggle blood-cells layout) or TRAIN/ and TEST/ directly; found {found or 'nothing'}.")


def _list_split(split_dir: Path, split: str, originals: dict[str, tuple[int, str]]
                ) -> tuple[list[ImageRecord], list[Path]]:
    """Records of one split folder, checking its class folders; also returns stray non-images."""
    entries = [p for p in split_dir.iterdir() if not p.name.startswith(".")]
    folders = sorted(p.name for p in entries if p.is_dir())
    missing = [c for c in CLASS_NAMES if c not in folders]
    unknown = [f for f in folders if f not in CLASS_NAMES]
    if missing or unknown:
        raise DatasetLayoutError(
            f"expected class folders {', '.join(CLASS_NAMES)} under {split_dir}; "
            f"found {', '.join(folders) or 'none'}"
            + (f" (missing {', '.join(missing)})" if missing else "")
            + (f" (unknown {', '.join(unknown)})" if unknown else "") + ".")
    records, strays = [], []
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = split_dir / class_name
        files = sorted(p for p in class_dir.iterdir()
                       if not p.name.startswith(".") and p.name.lower() not in _IGNORED_FILES)
        is_image = {p: p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in files}
        images = [p for p in files if is_image[p]]
        strays += [p for p in files if not is_image[p]]
        if not images:
            raise DatasetLayoutError(f"{class_dir}: the class folder has no images "
                                     f"(expected *.jpeg files{'; found ' + strays[-1].name if strays else ''}).")
        records += [ImageRecord(p, label, split, original_of(p, split, class_name, originals))
                    for p in images]
    return records, strays


def load_dataset(root: str | Path, check: str = "quick", synthetic: bool = False) -> Dataset:
    """Find and check a dataset in the Kaggle layout and list every usable image.

    check: "quick" (headers and JPEG end markers), "full" (decode every image) or "none".
    Unreadable images are skipped and listed in `Dataset.problems` (with a warning), not fatal.
    """
    root = Path(root).expanduser()
    images_dir = find_images_dir(root)
    splits: dict[str, list[ImageRecord]] = {}
    strays: list[Path] = []
    own_table = images_dir / ORIGINALS_FILE
    originals = read_originals(own_table) if own_table.is_file() else known_originals()
    for split in SPLITS:
        if (images_dir / split).is_dir():
            splits[split], split_strays = _list_split(images_dir / split, split, originals)
            strays += split_strays
    if "TRAIN" not in splits or "TEST" not in splits:
        have = ", ".join(sorted(splits)) or "none"
        raise DatasetLayoutError(f"{images_dir}: expected TRAIN and TEST split folders; found {have}.")
    if strays:
        names = ", ".join(str(p.relative_to(images_dir)) for p in strays[:5])
        raise DatasetLayoutError(
            f"{images_dir}: {len(strays)} file(s) that are not images sit in class folders "
            f"(expected only {', '.join(IMAGE_SUFFIXES)} files): {names}. Move them out.")
    problems: list[tuple[Path, str]] = []
    checker = {"quick": quick_check, "full": full_check, "none": None}[check]
    if checker is not None:
        for split, recs in splits.items():
            kept = []
            for r in recs:
                why = checker(r.path)
                (problems.append((r.path, why)) if why else kept.append(r))
            splits[split] = kept
    if problems:
        listing = "; ".join(f"{p.name}: {why}" for p, why in problems[:5])
        warnings.warn(f"Skipped {len(problems)} unreadable image(s) in {images_dir}: {listing}"
                      + (" ..." if len(problems) > 5 else ""), stacklevel=2)
    duplicates = cross_split_duplicates(splits)
    if duplicates:
        listing = "; ".join(f"{a.relative_to(images_dir)} == {b.relative_to(images_dir)}"
                            for a, b in duplicates[:3])
        warnings.warn(f"{len(duplicates)} image(s) appear, byte for byte, in more than one split "
                      f"({listing}): scores on those splits include images the model trained on.",
                      stacklevel=2)
    synthetic = synthetic or (root / "SYNTHETIC.json").exists()  # however it was reached
    return Dataset(root, images_dir, splits, problems, synthetic, duplicates)


def cross_split_duplicates(splits: dict[str, list[ImageRecord]]) -> list[tuple[Path, Path]]:
    """Pairs of byte-identical files in different splits (TRAIN vs TEST, say).

    Only files of equal size are hashed, so this costs a stat per file on a clean dataset.
    TEST_SIMPLE is left out: it holds the TEST originals by design.
    """
    from .files import sha256_file

    by_size: dict[int, list[ImageRecord]] = defaultdict(list)
    for split, recs in splits.items():
        if split != "TEST_SIMPLE":
            for r in recs:
                by_size[r.path.stat().st_size].append(r)
    pairs = []
    for group in by_size.values():
        if len({r.split for r in group}) < 2:
            continue
        by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in group:
            by_hash[sha256_file(r.path)].append(r)
        for same in by_hash.values():
            pairs += [(a.path, b.path) for i, a in enumerate(same) for b in same[i + 1:] if a.split != b.split]
    return pairs


HOW_TO_GET_DATA = ("Get the Kaggle blood-cells dataset with `python -m hematolib download` "
                   "(it goes to data/blood-cells), or point HEMATO_DATA at a copy you have.")


def find_data_dir() -> Path | None:
    """Where the real data is: `HEMATO_DATA`, else `data/blood-cells`, else None."""
    from_env = env_path("HEMATO_DATA")
    if from_env is not None:
        if not from_env.exists():
            raise DataNotFoundError(f"HEMATO_DATA={from_env} does not exist. {HOW_TO_GET_DATA}")
        return from_env
    local = PROJECT_DIR / "data" / "blood-cells"
    return local if local.exists() else None


def open_dataset(root: str | Path | None = None, allow_synthetic: bool = True,
                 check: str = "quick") -> Dataset:
    """The dataset at `root`; with None, the real dataset if there is one, otherwise, loudly,
    the built-in synthetic one."""
    root = Path(root) if root else find_data_dir()
    if root is not None:
        return load_dataset(root, check=check)
    if not allow_synthetic:
        raise DataNotFoundError(f"No blood-cell dataset found. {HOW_TO_GET_DATA}")
    from .synthetic import make_synthetic_dataset

    target = PROJECT_DIR / "data" / "synthetic"
    warnings.warn(
        "\n" + "!" * 78 + "\nNO REAL DATA FOUND: using the built-in SYNTHETIC dataset "
        f"({target}).\nResults are for trying the code only and say nothing about blood cells.\n"
        + HOW_TO_GET_DATA + "\n" + "!" * 78, stacklevel=2)
    make_synthetic_dataset(target)
    return load_dataset(target, check=check, synthetic=True)


def summary(ds: Dataset) -> str:
    """A table of images and distinct original cells per split and class, and a line naming any
    cell that TRAIN and TEST share (a leak in the dataset's own split)."""
    counts, originals = ds.counts(), ds.original_counts()
    lines = [f"{'split':<12}{'class':<12}{'images':>8}{'originals':>11}"]
    for split in counts:
        for class_name, n in counts[split].items():
            lines.append(f"{split:<12}{class_name:<12}{n:>8}{originals[split][class_name]:>11}")
        lines.append(f"{split:<12}{'all':<12}{sum(counts[split].values()):>8}"
                     f"{sum(originals[split].values()):>11}")
    shared = sorted({r.original for r in ds.train} & {r.original for r in ds.test})
    if shared:
        lines.append(f"TRAIN and TEST share {len(shared)} cell(s), photographed for both: {', '.join(shared)}")
    return "\n".join(lines)


def cap_per_class(records: Sequence[ImageRecord], per_class: int | None, seed: int = 0
                  ) -> list[ImageRecord]:
    """At most `per_class` images per class, spread over as many original cells as possible."""
    if per_class is None:
        return list(records)
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}.")
    rng = np.random.default_rng(seed)
    kept: list[ImageRecord] = []
    for label in range(len(CLASS_NAMES)):
        by_original: dict[str, list[ImageRecord]] = defaultdict(list)
        for r in records:
            if r.label == label:
                by_original[r.original].append(r)
        queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_original.items())]
        rng.shuffle(queues)
        chosen: list[ImageRecord] = []
        while len(chosen) < per_class and any(queues):
            for q in queues:  # round robin: one image from each original in turn
                if q and len(chosen) < per_class:
                    chosen.append(q.pop())
        kept += chosen
    return kept


def fingerprint(records: Iterable[ImageRecord]) -> str:
    """A short hash of which files (name, size, label) a model was trained on."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: (r.split, r.label, r.path.name)):
        h.update(f"{r.split}/{r.label}/{r.path.name}/{r.path.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def image_stats(records: Sequence[ImageRecord], limit: int = 200, seed: int = 0) -> dict:
    """Sizes and colour statistics of up to `limit` images per class.

    Returns {"sizes": {(w, h): count}, "mean": {class: RGB mean (3,)}, "std": {class: RGB std (3,)}}.
    """
    from PIL import Image

    sample = cap_per_class(records, limit, seed)
    sizes: dict[tuple[int, int], int] = defaultdict(int)
    pixels: dict[str, list[np.ndarray]] = defaultdict(list)
    for r in sample:
        with Image.open(r.path) as im:
            sizes[im.size] += 1
            arr = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3)
        pixels[r.class_name].append(np.stack([arr.mean(axis=0), arr.std(axis=0)]))
    return {"sizes": dict(sizes),
            "mean": {c: np.mean([p[0] for p in v], axis=0) for c, v in pixels.items()},
            "std": {c: np.mean([p[1] for p in v], axis=0) for c, v in pixels.items()}}


def labels_of(records: Sequence[ImageRecord]) -> np.ndarray:
    """Class indices of the records, int (n,)."""
    return np.array([r.label for r in records], dtype=np.int64)


def groups_of(records: Sequence[ImageRecord]) -> np.ndarray:
    """Original-cell ids of the records, str (n,)."""
    return np.array([r.original for r in records])
