"""Split records by original cell, so no cell has images on both sides; and the leaky random split."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from .data import ImageRecord


def copies_of(records: Sequence[ImageRecord], original: str) -> list[ImageRecord]:
    """Every image made from one original cell."""
    return [r for r in records if r.original == original]


def _shuffled_originals(records: Sequence[ImageRecord], seed: int) -> list[list[str]]:
    """Each class's original cells (classes in label order), shuffled by one generator seeded with
    `seed`: the seeded draw that `split_by_original` and `folds_by_original` deal cells from."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, set[str]] = defaultdict(set)
    for r in records:
        by_class[r.label].add(r.original)
    shuffled = []
    for label in sorted(by_class):
        originals = sorted(by_class[label])
        rng.shuffle(originals)
        shuffled.append(originals)
    return shuffled


def split_by_original(records: Sequence[ImageRecord], val_fraction: float = 0.2, seed: int = 0
                      ) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """A seeded, class-stratified train/validation split in which no original cell is on both sides.

    Each class keeps at least one original on each side when it has two or more.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    val_originals: set[str] = set()
    for originals in _shuffled_originals(records, seed):
        n_val = int(round(len(originals) * val_fraction))
        if len(originals) >= 2:
            n_val = min(max(n_val, 1), len(originals) - 1)
        val_originals.update(originals[:n_val])
    train = [r for r in records if r.original not in val_originals]
    val = [r for r in records if r.original in val_originals]
    return train, val


def folds_by_original(records: Sequence[ImageRecord], k: int = 5, seed: int = 0
                      ) -> list[tuple[list[ImageRecord], list[ImageRecord]]]:
    """`k` seeded, class-stratified (train, validation) pairs in which every original cell is
    validated exactly once and never on both sides of a pair: grouped k-fold cross-validation.

    Each class's originals are shuffled and dealt to the folds in turn, the deal continuing from
    class to class, so the folds differ in size by at most one original of each class.
    """
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}.")
    dealt = [original for originals in _shuffled_originals(records, seed) for original in originals]
    if len(dealt) < k:
        raise ValueError(f"{k} folds need at least {k} original cells; these records have {len(dealt)}.")
    fold_of = {original: turn % k for turn, original in enumerate(dealt)}
    return [([r for r in records if fold_of[r.original] != i], [r for r in records if fold_of[r.original] == i])
            for i in range(k)]


def split_random(records: Sequence[ImageRecord], val_fraction: float = 0.2, seed: int = 0
                 ) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """The leaky tutorial split: images drawn at random, so copies of one cell land on both sides."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    n_val = int(round(len(records) * val_fraction))
    val_idx = set(order[:n_val].tolist())
    return ([r for i, r in enumerate(records) if i not in val_idx],
            [r for i, r in enumerate(records) if i in val_idx])


def shared_originals(a: Iterable[ImageRecord], b: Iterable[ImageRecord]) -> set[str]:
    """Original cells that appear in both record lists (empty for an honest split)."""
    return {r.original for r in a} & {r.original for r in b}
