"""Score predictions honestly, from arrays (probabilities, labels, cells): accuracy with a bootstrap
interval over original cells, per-class metrics, calibration. Running a model is `inference`'s job."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from .config import CLASS_NAMES
from .data import ImageRecord, groups_of, labels_of


def _resampled_accuracies(correct: np.ndarray, groups: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """Accuracy over `n_boot` resamples of the cells (distinct `groups`), drawn with replacement."""
    names, inverse = np.unique(groups, return_inverse=True)
    hits = np.bincount(inverse, weights=np.asarray(correct, dtype=float), minlength=len(names))
    sizes = np.bincount(inverse, minlength=len(names)).astype(float)
    picks = rng.integers(0, len(names), size=(n_boot, len(names)))
    return hits[picks].sum(axis=1) / sizes[picks].sum(axis=1)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_accuracy(correct: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for accuracy that resamples original cells, not images.

    Images of one cell are near-copies, so resampling images would pretend there are thousands of
    independent samples and give a far too narrow interval.
    """
    return _interval(_resampled_accuracies(correct, groups, n_boot, np.random.default_rng(seed)), level)


def bootstrap_gap(correct_a: np.ndarray, groups_a: np.ndarray, correct_b: np.ndarray, groups_b: np.ndarray,
                  n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(accuracy on a minus accuracy on b, low, high): the gap between two sets of cells (two labs,
    say), with a bootstrap interval that resamples the cells of each set on its own."""
    rng = np.random.default_rng(seed)
    gaps = (_resampled_accuracies(correct_a, groups_a, n_boot, rng)
            - _resampled_accuracies(correct_b, groups_b, n_boot, rng))
    gap = float(np.mean(correct_a) - np.mean(correct_b))
    return (gap, *_interval(gaps, level))


@dataclass
class Report:
    """Scores of one model on one split."""

    split: str
    n_images: int
    n_originals: int
    accuracy: float
    ci_low: float  # 95% bootstrap interval over original cells
    ci_high: float
    per_class: dict[str, dict[str, float]]  # class -> precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    per_original_accuracy: float  # share of original cells whose images are mostly right
    log_loss: float  # mean -log(probability of the true class): lower is better; see log_loss()
    ece: float  # expected calibration error: how far confidence is from accuracy, 10 bins
    cells: str  # which original cells were scored (cells_id): reports compare only when it matches
    cells_missed: list[str] = field(default_factory=list)  # missed_cell_names: at most half their images right

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def correct(self) -> int:
        """Number of correctly classified images."""
        return int(round(self.accuracy * self.n_images))

    def table(self) -> str:
        """Per-class precision, recall, F1 and support as a text table."""
        lines = [f"{'class':<12}{'precision':>10}{'recall':>8}{'f1':>6}{'n':>6}"]
        for c, m in self.per_class.items():
            lines.append(f"{c:<12}{m['precision']:>10.2f}{m['recall']:>8.2f}{m['f1']:>6.2f}{m['support']:>6}")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line for people: accuracy, interval, how many cells it rests on, and calibration."""
        return (f"{self.split}: accuracy {self.accuracy:.1%} (95% CI {self.ci_low:.1%}-"
                f"{self.ci_high:.1%} over {self.n_originals} original cells, {self.n_images} images); "
                f"log loss {self.log_loss:.2f}, calibration error {self.ece:.1%}")


def evaluate(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, split: str = "TEST",
             class_names: Sequence[str] = CLASS_NAMES, n_boot: int = 2000, seed: int = 0) -> Report:
    """Accuracy, bootstrap interval, per-class precision/recall/F1 and confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    k = len(class_names)
    pred = probs.argmax(axis=1)
    correct = pred == labels
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=list(range(k)), zero_division=0)
    per_class = {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                     "f1": float(f1[i]), "support": int(support[i])}
                 for i, c in enumerate(class_names)}
    lo, hi = bootstrap_accuracy(correct, groups, n_boot=n_boot, seed=seed)
    cells, missed = np.unique(groups), missed_cell_names(correct, groups)
    return Report(split=split, n_images=int(len(labels)), n_originals=len(cells),
                  accuracy=float(correct.mean()), ci_low=lo, ci_high=hi, per_class=per_class,
                  confusion=confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
                  per_original_accuracy=1.0 - len(missed) / len(cells), log_loss=log_loss(probs, labels),
                  ece=calibration(probs, labels)["ece"], cells=cells_id(groups), cells_missed=missed)


def cells_id(groups) -> str:
    """A short fingerprint of the set of original cells behind `groups`.

    Two accuracies can be compared only when they come from the same cells: a model validated on
    other cells (another seed, another grouping, an older kit that split leakily) is not worse or
    better for its number.
    """
    import hashlib

    return hashlib.sha256("\n".join(sorted({str(g) for g in groups})).encode()).hexdigest()[:16]


def mistakes(probs: np.ndarray, records: Sequence[ImageRecord], limit: int = 16
             ) -> list[tuple[ImageRecord, int, float]]:
    """The most confident wrong predictions: (record, predicted class, confidence), worst first."""
    pred = probs.argmax(axis=1)
    wrong = [i for i, r in enumerate(records) if pred[i] != r.label]
    wrong.sort(key=lambda i: -probs[i, pred[i]])
    return [(records[i], int(pred[i]), float(probs[i, pred[i]])) for i in wrong[:limit]]


def missed_cell_names(correct: np.ndarray, groups: np.ndarray) -> list[str]:
    """The cells (original photographs, `groups`) a model misses: at most half of their images
    `correct`. The images of one cell stand or fall together."""
    return [str(g) for g in np.unique(groups) if correct[groups == g].mean() <= 0.5]


def missed_cell_details(probs: np.ndarray, records: Sequence[ImageRecord],
                        class_names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """Each cell a model misses (`missed_cell_names`), most images first, as {"cell", "true", "images",
    "right", "called", "little_stain"}: "called" is the class most of its wrong images got,
    "little_stain" how many of its images hold too little nucleus stain (`locate.little_stain`)."""
    from .images import read_image
    from .locate import little_stain

    pred = probs.argmax(axis=1)
    labels, groups = labels_of(records), groups_of(records)
    out = []
    for cell in missed_cell_names(pred == labels, groups):
        mine = groups == cell
        wrong = mine & (pred != labels)
        out.append({"cell": cell, "true": class_names[int(np.bincount(labels[mine]).argmax())],
                    "images": int(mine.sum()), "right": int(mine.sum() - wrong.sum()),
                    "called": class_names[int(np.bincount(pred[wrong], minlength=len(class_names)).argmax())],
                    "little_stain": sum(little_stain(read_image(records[i].path)[0]) for i in np.flatnonzero(mine))})
    return sorted(out, key=lambda m: -m["images"])


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log, probabilities clipped at 1e-7).

    A proper scoring rule: it is lowest when the probabilities are honest, and it punishes a confident
    mistake far more than a hesitant one, which accuracy cannot tell apart. A model that always says
    25% scores log 4 = 1.39.
    """
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability-diagram data: per confidence bin, mean confidence, accuracy and count; plus ECE."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
        acc = np.bincount(idx, weights=correct, minlength=bins) / count
    ece = float(np.nansum(np.abs(acc - mean_conf) * count) / max(count.sum(), 1))
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count, "ece": ece}
