"""The kit's default training recipe, end to end, shared by the CLI, the notebooks and the benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import BOTH_LABS_IMAGE_SIZE, Config, kaggle_model_path
from .data import Dataset, cap_per_class, fingerprint
from .evaluate import Report
from .familiar import TooFewToCalibrate, as_extras, of_model
from .inference import evaluate_records
from .splits import split_by_original
from .train import History, fine_tune, fit_head

QUICK = Config(per_class=60, head_epochs=10, fine_tune_epochs=0)  # about a minute on a laptop CPU
FURTHER_EPOCHS = 3  # notebook 06's fine-tuning of the course's model on both labs (fine_tune_further)


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


def fit(train: Sequence, val: Sequence, config: Config, verbose: int = 1,
        callbacks: Sequence = ()) -> Trained:
    """The recipe's training, and nothing else (no TEST): a new model, the head on its cached
    features, then fine-tuning with `config`'s augmentation (hl.augment.make_augmenter, with the
    channel jitter if `config.channel_jitter`) if `config.fine_tune_epochs`. `val` may be empty (a
    refit). Seed first (`train.set_seed`) for a repeatable run. callbacks: extra Keras callbacks for
    the fine-tuning stage."""
    from . import cache
    from . import model as mdl

    seconds: dict[str, float] = {}
    model = mdl.build(alpha=config.alpha, image_size=config.image_size, dropout=config.dropout,
                      crop=config.crop, flips=config.flips)
    start = time.perf_counter()
    cache.features(model, list(train) + list(val))  # once; the head reads them back
    seconds["feature extraction"] = time.perf_counter() - start
    start = time.perf_counter()
    histories = [fit_head(model, train, val, config, verbose=verbose)]
    seconds["head"] = time.perf_counter() - start
    if config.fine_tune_epochs:
        start = time.perf_counter()
        histories.append(fine_tune(model, train, val, config, augment=augmenter(config), verbose=verbose,
                                   callbacks=callbacks))
        seconds["fine-tuning"] = time.perf_counter() - start
    return Trained(model, histories, seconds)


def run(ds: Dataset, config: Config, out: str | Path | None = None, verbose: int = 1,
        callbacks: Sequence = (), second_lab: Sequence | None = None, test: bool = True) -> RecipeResult:
    """`split`, `fit`, then VALIDATION (unless `config.val_fraction` is 0: trained on every TRAIN
    cell) and, with `test`, TEST and TEST_SIMPLE reports; saves the model with its metadata to
    `out` when given.
    second_lab: another lab's records (`hl.pbc`), split by cell (`labs.split_cells`) and added to
    training and validation (to training only in a refit); its test cells get a report of their own.
    `config` is used as given: `python -m hematolib train` passes `both_labs_config` with a second lab.
    callbacks: extra Keras callbacks for the fine-tuning stage."""
    from . import model_file
    from .labs import split_cells

    train, val = split(ds, config)
    credits = []
    if second_lab:
        from .pbc import CREDIT

        lab = cap_per_class(second_lab, config.per_class, config.seed)
        lab_train, lab_val, lab_test = split_cells(lab, config.seed)
        train, val = (train + lab_train, val + lab_val) if val else (train + lab_train + lab_val, val)
        credits = [CREDIT]
    trained = fit(train, val, config, verbose=verbose, callbacks=callbacks)
    model = trained.model
    reports = {"VALIDATION": evaluate_records(model, val, "VALIDATION")[0]} if val else {}
    if test:
        reports["TEST"] = evaluate_records(model, cap_per_class(ds.test, config.per_class, config.seed), "TEST")[0]
    if test and ds.test_simple:
        reports["TEST_SIMPLE"] = evaluate_records(model, ds.test_simple, "TEST_SIMPLE")[0]
    if test and second_lab:
        reports["SECOND_LAB_TEST"] = evaluate_records(model, lab_test, "SECOND_LAB_TEST")[0]
    familiarity = familiarity_of(model, train, val)
    info = model_info(config, ds, train, reports)
    info.credits = credits
    path = model_file.save(model, out, info, extras=as_extras(familiarity)) if out is not None else None
    return RecipeResult(model, path, reports, trained.histories, trained.seconds)


def compare_splits(train: Sequence, train_features, val: Sequence, val_features, config: Config
                   ) -> dict[str, dict[str, float]]:
    """A head trained on a random image split of `train`, against one trained on all of `train`
    (split from `val` by cell): each scored on its own validation images and on `val`'s new cells.

    The random split leaves copies of every cell on both sides, so its validation score promises
    more than the new cells deliver. Takes the features notebook 03 computed (n, channels)."""
    import keras

    from .data import labels_of
    from .splits import split_random

    k = len(config.class_names)
    row = {r.path: i for i, r in enumerate(train)}
    leaky_train, leaky_val = split_random(train, config.val_fraction, config.seed)

    def accuracy_of_head(fit_on, fit_features, scored):
        head = keras.Sequential([keras.Input(fit_features.shape[1:]), keras.layers.Dropout(config.dropout),
                                 keras.layers.Dense(k, activation="softmax")])
        head.compile(keras.optimizers.Adam(config.head_learning_rate), keras.losses.CategoricalCrossentropy(
            label_smoothing=config.label_smoothing), metrics=["accuracy"])
        head.fit(fit_features, keras.utils.to_categorical(labels_of(fit_on), k), epochs=config.head_epochs,
                 batch_size=config.batch_size, verbose=0)
        return [float(np.mean(head.predict(f, verbose=0).argmax(1) == labels_of(r))) for r, f in scored]

    leaky_features = (train_features[[row[r.path] for r in leaky_train]],
                      train_features[[row[r.path] for r in leaky_val]])
    leaky = accuracy_of_head(leaky_train, leaky_features[0], [(leaky_val, leaky_features[1]), (val, val_features)])
    grouped, = accuracy_of_head(train, train_features, [(val, val_features)])
    return {"random split (leaky)": {"validation": leaky[0], "new cells": leaky[1]},
            "grouped by cell": {"validation": grouped, "new cells": grouped}}


def keep_better(tuned, tuned_report: Report, head_path: str | Path, head_report: Report):
    """The fine-tuned model if it validates at least as well as the head-only model saved at
    `head_path`, else that one, reloaded. Returns (model, its report, a sentence saying which).

    Fine-tuning on a CPU with few epochs can make a model worse; validation decides, never TEST.
    """
    from . import model_file

    if tuned_report.accuracy >= head_report.accuracy:
        return tuned, tuned_report, (f"Keeping the fine-tuned model: validation {tuned_report.accuracy:.1%} "
                                     f"(head only: {head_report.accuracy:.1%}).")
    head, _ = model_file.load(head_path)
    return head, head_report, (f"Fine-tuning did not help on validation ({tuned_report.accuracy:.1%} vs "
                               f"{head_report.accuracy:.1%}): keeping the head-only model.")


def save_if_better(model, path: str | Path, info, metric: str | Sequence[str] = "VALIDATION",
                   familiarity=None) -> tuple[bool, str]:
    """Save the model to `path` unless the model already there scored better on `metric` over the
    same cells. Returns (saved, a message that says what happened).

    Rerunning a notebook with a worse result then never silently replaces a better model. Given
    several metrics (a two-lab model's `("VALIDATION", "SECOND_LAB_VALIDATION")`), the mean of
    their accuracies is compared, each lab counting the same. An existing model that cannot be
    compared (scored on other cells, such as another seed's or an older kit's leaky split; lacking
    one of the metrics; saved by an older kit) is replaced, and its file kept beside the new one
    as `<name>.previous.keras`. A file that is not a readable model is replaced, and the message
    says so. `familiarity` (`hl.familiar.of_model`) is stored with the model, so predictions can
    flag unfamiliar images.
    """
    import shutil

    from . import model_file
    from .files import atomic_path

    path = Path(path)
    names = [metric] if isinstance(metric, str) else list(metric)
    what = names[0].lower() if len(names) == 1 else "mean validation"
    new = [info.metrics[name] for name in names]
    new_accuracy = float(np.mean([m["accuracy"] for m in new]))
    aside = ""
    try:
        existing = model_file.read_info(path) if path.exists() else None
    except model_file.ModelFileError as exc:
        existing, aside = None, f" The file it replaces was not a readable model: {exc}"
    if existing is not None:
        old = [existing.metrics.get(name, {}) for name in names]
        missing = [name for name, o in zip(names, old) if o.get("accuracy") is None]
        if existing.format_version < model_file.FORMAT_VERSION:
            why = "was saved by an older kit, which this one cannot load"
        elif missing:
            why = f"has no {' or '.join(missing)} accuracy to compare"
        elif any(o.get("cells") != n.get("cells") for o, n in zip(old, new)):
            why = (f"was scored on other cells ({what} accuracy "
                   f"{np.mean([o['accuracy'] for o in old]):.1%}), so the two cannot be compared")
        else:
            old_accuracy = float(np.mean([o["accuracy"] for o in old]))
            if old_accuracy > new_accuracy:
                return False, (f"Kept the existing {path.name}: its {what} accuracy {old_accuracy:.1%} "
                               f"beats this run's {new_accuracy:.1%} on the same cells. Delete it or save "
                               "elsewhere to replace it.")
            why = ""
        if why:
            previous = path.with_name(f"{path.stem}.previous.keras")
            for src, dst in ((path, previous), (model_file.metadata_path(path), model_file.metadata_path(previous))):
                if src.exists():  # copied, so the model stays at `path` until the new one replaces it
                    with atomic_path(dst) as tmp:
                        shutil.copyfile(src, tmp)
            aside = f" The model it replaces {why}; it is now {previous.name}."
    model_file.save(model, path, info, extras=as_extras(familiarity))
    return True, f"Saved {path} ({what} accuracy {new_accuracy:.1%}).{aside}"


def augmenter(config: Config):
    """The random layers the recipe fine-tunes through: `augment.make_augmenter` at `config.seed`,
    with the channel jitter if `config.channel_jitter`."""
    from .augment import make_augmenter

    return make_augmenter(seed=config.seed, channel_jitter=config.channel_jitter)


def model_info(config: Config, ds: Dataset, train, reports: dict[str, Report], fine_tuned: bool = True):
    """The metadata to save with a model trained by this recipe (`fine_tuned=False`: a head-only
    model, notebook 03's or the one validation kept, so the metadata says no fine-tuning and no
    augmentation).

    A refit (`config.val_fraction` 0) has no validation cells of its own; a VALIDATION report
    given for it is the held-out run's of the same recipe, and its metrics say so.
    """
    from . import model_file
    from .augment import describe

    if not fine_tuned:
        config = Config.from_dict(config.to_dict(), fine_tune_epochs=0)
    metrics = {k: r.to_dict() for k, r in reports.items()}
    if not config.val_fraction and "VALIDATION" in metrics:
        metrics["VALIDATION"]["estimated_by"] = REFIT_ESTIMATE
    return model_file.ModelInfo(class_names=list(config.class_names), image_size=config.image_size,
                                alpha=config.alpha, crop=config.crop, data_fingerprint=fingerprint(train),
                                synthetic_data=ds.synthetic, config=config.to_dict(), metrics=metrics,
                                augmentation=describe(augmenter(config)) if config.fine_tune_epochs else {})


REFIT_ESTIMATE = ("the same recipe's run with these cells held out: this model trained on every TRAIN cell, "
                  "so it has no validation cells of its own")


def refit(ds: Dataset, config: Config, held_out: Report, fine_tuned: bool = True, verbose: int = 1):
    """The final model: the recipe that `held_out` (its validation report) estimated, trained again
    on every TRAIN cell with the same fixed schedule. `fine_tuned=False` when validation kept the
    head-only model: the refit then trains the head only too. Returns (model, ModelInfo, Familiarity
    cross-fitted on its training cells, as it has no validation cells, or None: `familiarity_of`);
    TEST is not touched."""
    final = refit_config(config if fine_tuned else Config.from_dict(config.to_dict(), fine_tune_epochs=0))
    cells, _ = split(ds, final)
    trained = fit(cells, [], final, verbose=verbose)
    info = model_info(final, ds, cells, {"VALIDATION": held_out})
    return trained.model, info, familiarity_of(trained.model, cells, [])


def familiarity_of(model, train: Sequence, val: Sequence):
    """`familiar.of_model`, cross-fitted when `val` is empty (a refit); None, said, when there are too
    few images or cells to calibrate it: the model then predicts without the unfamiliar-image flag."""
    try:
        return of_model(model, train, val)
    except TooFewToCalibrate as err:
        print(f"No unfamiliar-image flag for this model: {err}")
        return None


def fine_tune_further(model, train: Sequence, config: Config, epochs: int, verbose: int = 1) -> History:
    """`config`'s fine-tuning (augmentation, warm-up, cosine decay), `epochs` more passes over `train`,
    from `model`'s trained weights and with no validation: how notebook 06 and the benchmark take
    the course's model to both labs' cells. Never with the channel jitter, even for a model trained
    with it: on both labs' cells it costs the first lab's. Seed first (`train.set_seed`) for a
    repeatable run."""
    further = Config.from_dict(config.to_dict(), fine_tune_epochs=epochs)
    return fine_tune(model, train, [], further, augment=further_augmenter(config), verbose=verbose)


def further_augmenter(config: Config):
    """The random layers `fine_tune_further` trains through: `config`'s, never the channel jitter."""
    from .augment import make_augmenter

    return make_augmenter(seed=config.seed)


def further_info(config: Config, ds: Dataset, train, reports: dict[str, Report], epochs: int):
    """The metadata of a model `fine_tune_further` took to both labs (notebook 06's two-lab model):
    `model_info` with both datasets' credits, what the further training was, and its augmentation."""
    from .augment import describe
    from .pbc import CREDIT

    info = model_info(config, ds, train, reports)
    info.credits = [CREDIT, "Kaggle blood-cells (BCCD), MIT licence"]
    info.further_training = f"notebook 04's model, fine-tuned further on both labs' training cells (epochs: {epochs})"
    info.augmentation = describe(further_augmenter(config))
    return info


def both_labs_config(config: Config) -> Config:
    """`config` for training on both labs from the start: the same recipe at `BOTH_LABS_IMAGE_SIZE`."""
    return Config.from_dict(config.to_dict(), image_size=BOTH_LABS_IMAGE_SIZE)


def one_lab_config(config: Config) -> Config:
    """`config` for a model of the Kaggle lab alone from `python -m hematolib train`: the same recipe
    with each colour channel jittered in training (`augment.make_augmenter(channel_jitter=True)`)."""
    return Config.from_dict(config.to_dict(), channel_jitter=True)


def refit_config(config: Config) -> Config:
    """`config` for the final model: the same recipe, with every TRAIN cell training (no validation
    split)."""
    return Config.from_dict(config.to_dict(), val_fraction=0.0)


def load_or_train(path: str | Path | None = None, ds: Dataset | None = None, config: Config = QUICK,
                  verbose: int = 0, per_class: int | None = None):
    """The saved model at `path` (default models/hematovision.keras), or, when there is none, one
    trained now by `config` (capped at `per_class` images per class, if given) and saved there.
    Says which, and says when the model was trained on a capped share of the images. TEST is not
    read. Returns (model, ModelInfo)."""
    from . import model_file
    from .data import open_dataset

    path = Path(path) if path is not None else kaggle_model_path()
    if not path.exists():
        config = Config.from_dict(config.to_dict(), per_class=per_class or config.per_class)
        cap = f"at most {config.per_class} images per class" if config.per_class else "every training image"
        print(f"No model at {path}: training one now ({cap}, head {config.head_epochs} epochs"
              + (f", fine-tuning {config.fine_tune_epochs}" if config.fine_tune_epochs else ", no fine-tuning")
              + "). Run the notebooks before this one for the course's model (in Colab, keep models on "
              "Google Drive between notebooks: see the setup cell).", flush=True)
        run(ds if ds is not None else open_dataset(), config, out=path, verbose=verbose, test=False)
    model, info = model_file.load(path)
    cap = info.config.get("per_class")
    print(f"Loaded {path}" + (f" (a quick model: trained on at most {cap} images per class)" if cap else ""))
    return model, info
