"""The kit's default training recipe, end to end, shared by the CLI, the notebooks and the benchmark."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .config import Config, default_model_path
from .data import Dataset, cap_per_class, fingerprint, split_by_original
from .evaluate import Report, evaluate_records
from .train import History, extract_features, fine_tune, fit_head, recalibrate_batchnorm

QUICK = Config(per_class=60, head_epochs=10, fine_tune_epochs=0)  # about a minute on a laptop CPU


@dataclass
class RecipeResult:
    """What `run` produced: the trained model, where it was saved, its reports and curves, and
    the wall time of each training stage in seconds."""

    model: object
    path: Path | None
    reports: dict[str, Report]
    histories: list[History] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def split(ds: Dataset, config: Config, splitter=split_by_original):
    """The recipe's train and validation records: grouped by original cell, then capped.

    Validation gets a quarter of the per-class cap (at least 8), like the 80/20 split itself.
    With `config.val_fraction` 0 every TRAIN cell trains and validation is empty (a refit).
    """
    if not config.val_fraction:
        return cap_per_class(list(ds.train), config.per_class, config.seed), []
    train, val = splitter(ds.train, config.val_fraction, config.seed)
    val_cap = max(config.per_class // 4, 8) if config.per_class else None
    return cap_per_class(train, config.per_class, config.seed), cap_per_class(val, val_cap, config.seed)


@dataclass
class Trained:
    """What `fit` produced: the model, its training curves, and each stage's wall time in seconds."""

    model: object
    histories: list[History]
    seconds: dict[str, float]


def fit(train: Sequence, val: Sequence, config: Config, augment=None, verbose: int = 1,
        callbacks: Sequence = ()) -> Trained:
    """The recipe's training, and nothing else (no TEST): a new model (its BatchNorm statistics
    re-estimated on `train` if `config.recalibrate_batchnorm`, timed as a stage of its own),
    features extracted once, the head on them, then fine-tuning with augmentation (`augment`,
    default hl.augment.build's) if `config.fine_tune_epochs`. `val` may be empty with the fixed
    "cosine" schedule (a refit).
    callbacks: extra Keras callbacks for the fine-tuning stage."""
    from . import model as mdl
    from .augment import build as build_augmenter

    seconds: dict[str, float] = {}
    model = mdl.build(alpha=config.alpha, image_size=config.image_size, dropout=config.dropout,
                      seed=config.seed, crop=config.crop, flips=config.flips, stain_norm=config.stain_norm)
    if config.recalibrate_batchnorm:  # on training cells only: validation stays unseen
        start = time.perf_counter()
        recalibrate_batchnorm(model, train, seed=config.seed)
        seconds["BatchNorm recalibration"] = time.perf_counter() - start
    start = time.perf_counter()
    extract_features(model, list(train) + list(val), verbose=verbose)  # once; the head reads them back
    seconds["feature extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    histories = [fit_head(model, train, val, config, verbose=verbose)]
    seconds["head"] = time.perf_counter() - start
    if config.fine_tune_epochs:
        start = time.perf_counter()
        augment = augment if augment is not None else build_augmenter(seed=config.seed)
        histories.append(fine_tune(model, train, val, config, augment=augment, verbose=verbose,
                                   callbacks=callbacks))
        seconds["fine-tuning"] = time.perf_counter() - start
    return Trained(model, histories, seconds)


def run(ds: Dataset, config: Config, out: str | Path | None = None, verbose: int = 1,
        callbacks: Sequence = ()) -> RecipeResult:
    """`split`, `fit`, then VALIDATION (unless `config.val_fraction` is 0: trained on every TRAIN
    cell), TEST and TEST_SIMPLE reports; saves the model with its metadata to `out` when given.
    callbacks: extra Keras callbacks for the fine-tuning stage."""
    from . import model as mdl

    train, val = split(ds, config)
    trained = fit(train, val, config, verbose=verbose, callbacks=callbacks)
    model = trained.model
    reports = {"VALIDATION": evaluate_records(model, val, "VALIDATION")[0]} if val else {}
    reports["TEST"] = evaluate_records(model, cap_per_class(ds.test, config.per_class, config.seed), "TEST")[0]
    if ds.test_simple:
        reports["TEST_SIMPLE"] = evaluate_records(model, ds.test_simple, "TEST_SIMPLE")[0]
    path = mdl.save(model, out, model_info(config, ds, train, reports)) if out is not None else None
    return RecipeResult(model, path, reports, trained.histories, trained.seconds)


def compare_splits(ds: Dataset, config: Config, verbose: int = 0) -> dict[str, dict[str, float]]:
    """Train the head twice, on a random and on a grouped validation split, and score both on
    validation and TEST. The random split's validation score is inflated by leaked cells."""
    from . import model as mdl
    from .data import split_random

    test = cap_per_class(ds.test, config.per_class, config.seed)
    out = {}
    for name, splitter in (("random split (leaky)", split_random), ("grouped by original cell", split_by_original)):
        train, val = split(ds, config, splitter)
        model = mdl.build(alpha=config.alpha, image_size=config.image_size, seed=config.seed,
                          crop=config.crop, flips=config.flips, stain_norm=config.stain_norm)
        fit_head(model, train, val, config, verbose=verbose)
        out[name] = {"validation": evaluate_records(model, val, "VALIDATION")[0].accuracy,
                     "test": evaluate_records(model, test, "TEST")[0].accuracy}
    return out


def keep_better(tuned, tuned_report: Report, head_path: str | Path, head_report: Report):
    """The fine-tuned model if it validates at least as well as the head-only model saved at
    `head_path`, else that one, reloaded. Returns (model, its report, a sentence saying which).

    Fine-tuning on a CPU with few epochs can make a model worse; validation decides, never TEST.
    """
    from . import model as mdl

    if tuned_report.accuracy >= head_report.accuracy:
        return tuned, tuned_report, (f"Keeping the fine-tuned model: validation {tuned_report.accuracy:.1%} "
                                     f"(head only: {head_report.accuracy:.1%}).")
    head, _ = mdl.load(head_path)
    return head, head_report, (f"Fine-tuning did not help on validation ({tuned_report.accuracy:.1%} vs "
                               f"{head_report.accuracy:.1%}): keeping the head-only model.")


def save_if_better(model, path: str | Path, info, metric: str = "VALIDATION") -> tuple[bool, str]:
    """Save unless the model already at `path` scored better on `metric` over the same cells; says
    what it did.

    Rerunning a notebook with a worse result then never silently replaces a better model. A model
    scored on other cells (another seed or split, or an older kit's leaky one) cannot be compared:
    it is replaced, and kept beside it as `<name>.previous.keras`.
    """
    import shutil

    from . import model as mdl
    from .files import atomic_path

    path = Path(path)
    new = info.metrics[metric]
    try:
        old = mdl.read_info(path).metrics.get(metric, {}) if path.exists() else {}
    except mdl.ModelFileError:
        old = {}  # unreadable: replace it
    aside = ""
    if old.get("accuracy") is not None and old.get("cells") == new.get("cells"):
        if old["accuracy"] > new["accuracy"]:
            return False, (f"Kept the existing {path.name}: its {metric.lower()} accuracy {old['accuracy']:.1%} "
                           f"beats this run's {new['accuracy']:.1%} on the same cells. Delete it or save "
                           "elsewhere to replace it.")
    elif old.get("accuracy") is not None:
        previous = path.with_name(f"{path.stem}.previous.keras")
        for src, dst in ((path, previous), (mdl.metadata_path(path), mdl.metadata_path(previous))):
            if src.exists():  # copied, so the model stays at `path` until the new one replaces it
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
        aside = (f" The model it replaces was scored on other {metric.lower()} cells ({old['accuracy']:.1%}), "
                 f"so the two cannot be compared; it is now {previous.name}.")
    mdl.save(model, path, info)
    return True, f"Saved {path} ({metric.lower()} accuracy {new['accuracy']:.1%}).{aside}"


def model_info(config: Config, ds: Dataset, train, reports: dict[str, Report]):
    """The metadata to save with a model trained by this recipe.

    A refit (`config.val_fraction` 0) has no validation cells of its own; a VALIDATION report
    given for it is the held-out run's of the same recipe, and its metrics say so.
    """
    from . import model as mdl

    metrics = {k: r.to_dict() for k, r in reports.items()}
    if not config.val_fraction and "VALIDATION" in metrics:
        metrics["VALIDATION"]["estimated_by"] = REFIT_ESTIMATE
    return mdl.ModelInfo(class_names=list(config.class_names), image_size=config.image_size,
                         alpha=config.alpha, crop=config.crop, data_fingerprint=fingerprint(train),
                         synthetic_data=ds.synthetic, config=config.to_dict(), metrics=metrics)


REFIT_ESTIMATE = ("the same recipe's run with these cells held out: this model trained on every TRAIN cell, "
                  "so it has no validation cells of its own")


def refit(ds: Dataset, config: Config, held_out: Report, fine_tuned: bool = True, verbose: int = 1):
    """The final model: the recipe that `held_out` (its validation report) estimated, trained again
    on every TRAIN cell with the same fixed schedule. `fine_tuned=False` when validation kept the
    head-only model: the refit then trains the head only too. Returns (model, ModelInfo); TEST is
    not touched."""
    final = refit_config(config if fine_tuned else Config.from_dict(config.to_dict(), fine_tune_epochs=0))
    cells, _ = split(ds, final)
    trained = fit(cells, [], final, verbose=verbose)
    return trained.model, model_info(final, ds, cells, {"VALIDATION": held_out})


def refit_config(config: Config) -> Config:
    """`config` for the final model: the same recipe, with every TRAIN cell training (no validation
    split). Config refuses it for a schedule that needs validation cells ("plateau")."""
    return Config.from_dict(config.to_dict(), val_fraction=0.0)


def load_or_train(path: str | Path | None = None, ds: Dataset | None = None,
                  config: Config = QUICK, verbose: int = 0):
    """The saved model at `path` (default models/hematovision.keras), or a quick one trained now.

    Returns (model, ModelInfo). Used by notebooks that need a model from an earlier notebook.
    """
    from . import model as mdl
    from .data import open_dataset

    path = Path(path) if path is not None else default_model_path()
    if not path.exists():
        warnings.warn(f"No model at {path}: training a quick one now ({config.per_class} images "
                      "per class, head only). Run notebooks 03 and 04 for the real thing.",
                      stacklevel=2)
        run(ds if ds is not None else open_dataset(), config, out=path, verbose=verbose)
    return mdl.load(path)
