"""One place for the kit's constants, paths and the training configuration."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLASS_NAMES: tuple[str, ...] = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
SPLITS: tuple[str, ...] = ("TRAIN", "TEST", "TEST_SIMPLE")
BOTH_LABS_IMAGE_SIZE = 160  # the recipe trained on both labs from the start sees 160 px, not 128
SMEAR_SIZE = (240, 320)  # (height, width) of the dataset's images: the input of cropping models

# The project folder when hematolib runs from a checkout (editable install); else the cwd.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
PROJECT_DIR = _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").exists() else Path.cwd()


@dataclass(frozen=True)
class Config:
    """Every knob of a training run, passed explicitly to the functions that need it."""

    image_size: int = 128  # side of the square the network sees (the crop is resized to it)
    alpha: float = 0.35  # MobileNetV2 width multiplier: 0.35 (fast) or 1.0
    crop: bool = True  # the model crops around the stained white cell before the network
    flips: bool = True  # the model predicts the mean over four flipped views (test-time augmentation)
    batch_size: int = 32
    seed: int = 42
    val_fraction: float = 0.2  # share of TRAIN originals held out for validation; 0: train on all of them
    per_class: int | None = None  # cap on images per class and split (None = all)
    head_epochs: int = 30  # a fixed number: nothing is decided on the validation cells
    head_learning_rate: float = 1e-3
    dropout: float = 0.2
    label_smoothing: float = 0.1  # train towards 0.925 for the true class and 0.025 for each other
    fine_tune_epochs: int = 16  # full passes over the training crops with the base unfrozen
    fine_tune_layers: int | None = None  # layers at the top of the base to unfreeze; None: all of it
    fine_tune_learning_rate: float = 1e-4  # 10x lower than the head's
    # The learning rate rises linearly from zero over warmup_epochs (at most half of the fine-tuning),
    # then follows a cosine down to zero at the last step; the last epoch is kept.
    warmup_epochs: float = 1.0
    channel_jitter: bool = False  # fine-tuning moves each colour channel at random (augment.make_augmenter)
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    def __post_init__(self):
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be at least 0 and below 1, got {self.val_fraction}.")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be at least 0, got {self.warmup_epochs}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be at least 0 and below 1, got {self.label_smoothing}.")

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "Config":
        """A Config from `to_dict` output (e.g. a saved model's metadata), with `overrides` applied."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "class_names" in known:
            known["class_names"] = tuple(known["class_names"])
        return cls(**{**known, **overrides})

    def to_dict(self) -> dict:
        """A JSON-friendly copy, for model metadata and results files."""
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d


def env_path(name: str) -> Path | None:
    """The path in environment variable `name`, with ~ expanded, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def models_dir() -> Path:
    """Where trained models go: `HEMATO_MODELS`, else `models/` in the project."""
    return env_path("HEMATO_MODELS") or PROJECT_DIR / "models"


def cache_dir() -> Path:
    """Where cached features live: `HEMATO_CACHE`, else `~/.cache/hematovision`."""
    return env_path("HEMATO_CACHE") or Path.home() / ".cache" / "hematovision"


def kaggle_model_path() -> Path:
    """The model trained on the Kaggle lab alone: notebook 04's (which notebooks 05 and 06 study),
    or `python -m hematolib train --labs kaggle`'s."""
    return models_dir() / "hematovision.keras"


def two_labs_model_path() -> Path:
    """The model trained on both labs: notebook 06's, or `python -m hematolib train`'s when the
    second lab's images are there."""
    return models_dir() / "hematovision_two_labs.keras"


def default_model_path() -> Path:
    """The model the widget, `make demo` and `python -m hematolib predict` and `evaluate` use: the
    two-lab model when there is one (it has seen both labs' cells), else the Kaggle lab's."""
    two_labs = two_labs_model_path()
    return two_labs if two_labs.exists() else kaggle_model_path()
