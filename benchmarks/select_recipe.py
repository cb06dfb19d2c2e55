"""Choose the default recipe on the grouped validation split; TEST is never read here.

Each candidate trains on TRAIN minus the validation cells (grouped by the photograph behind each
image, as the kit always splits) and is scored on those held-out cells: accuracy and log loss from
one view and with the four flipped views averaged, and accuracy under the robustness shifts.
Candidates are ranked by log loss with flips: a proper scoring rule, and finer than accuracy, which
over some 54 validation cells moves in steps of about two points. One JSON line per
candidate goes to build/benchmark/selection.jsonl, its model to build/benchmark/candidates/.

    python benchmarks/select_recipe.py                 # every candidate (3 hours or more on 2 cores)
    python benchmarks/select_recipe.py 0.35-all-8-160  # one of them (about 15 min; 1.0-all-8-160-cosine: 20 min)
    python benchmarks/select_recipe.py --publish       # the table of those run so far, into docs/recipe-search.md
    python benchmarks/select_recipe.py --ensemble A B  # the mean of A's and B's saved models (a minute)
    python benchmarks/select_recipe.py --views models/hematovision.keras  # other test-time views, same model
    python benchmarks/select_recipe.py --folds 5 NAME  # grouped 5-fold cross-validation of one candidate (5 runs)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import hematolib as hl
from hematolib.config import PROJECT_DIR, Config

OUT = PROJECT_DIR / "build" / "benchmark" / "selection.jsonl"
SEARCH_DOC = PROJECT_DIR / "docs" / "recipe-search.md"  # the search's story, around the candidates' table


def candidate(alpha: float, size: int, epochs: int, layers: int | None = None, label_smoothing: float = 0.0,
              warmup: float = 0.0, **kw) -> Config:
    """A candidate's Config. Each names its width, input size, label smoothing and warm-up, so
    Config's defaults can follow whichever candidate wins without changing the others."""
    return Config(alpha=alpha, image_size=size, fine_tune_epochs=epochs, fine_tune_layers=layers,
                  label_smoothing=label_smoothing, warmup_epochs=warmup, **kw)


# The first candidates were written before the cosine schedule became the default: they name "plateau".
CANDIDATES: dict[str, Config] = {
    "0.35-top40-4": candidate(0.35, 128, 4, 40, schedule="plateau"),  # the default before 0.35-all-8
    "0.35-top40-8": candidate(0.35, 128, 8, 40, schedule="plateau"),
    "0.35-all-8": candidate(0.35, 128, 8, schedule="plateau"),
    "0.35-all-12": candidate(0.35, 128, 12, schedule="plateau"),
    "0.35-all-8-ls": candidate(0.35, 128, 8, label_smoothing=0.1, schedule="plateau"),
    "0.35-all-8-strong": candidate(0.35, 128, 8, schedule="plateau"),
    "0.35-all-8-160": candidate(0.35, 160, 8, schedule="plateau"),
    "0.35-all-8-160-strong": candidate(0.35, 160, 8, schedule="plateau"),
    "0.35-all-8-160-cosine": candidate(0.35, 160, 8, schedule="cosine"),
    "0.35-all-8-160-cosine-fewer": candidate(0.35, 160, 8, schedule="cosine"),
    # Half the fine-tuning: a laptop's course and the time to 85% would gain, if validation loses nothing.
    "0.35-all-4-160-cosine": candidate(0.35, 160, 4, schedule="cosine"),
    # Half again as much fine-tuning: 4 epochs lost to 8 (log loss 0.045 against 0.018); do 12 gain?
    "0.35-all-12-160-cosine": candidate(0.35, 160, 12, schedule="cosine"),  # the default before 0.35-all-16
    # 12 epochs validated better than 8 (0.009 against 0.018): is 16 better still?
    "0.35-all-16-160-cosine": candidate(0.35, 160, 16, schedule="cosine"),  # the default before -ls
    # Another seed: other validation cells (the split follows the seed) and another initialisation, to
    # see how far the candidates' figures move by chance alone.
    "0.35-all-8-160-cosine-seed7": candidate(0.35, 160, 8, schedule="cosine", seed=7),
    "0.35-all-4-160-cosine-seed7": candidate(0.35, 160, 4, schedule="cosine", seed=7),
    # The wider network: its frozen features trained a head no better than 0.35's (92.5% against
    # 92.8% on validation at 160 px); does it fine-tune better, epoch for epoch? (It validated about as
    # well as 0.35-all-16 in half the epochs; as the default for one benchmark it scored lower on TEST.)
    "1.0-all-8-160-cosine": candidate(1.0, 160, 8, schedule="cosine"),
    # With cells held out by photograph the default validates at 86% and its log loss (0.78) is that
    # of a confident model that is wrong on whole cells: do stronger scale and stain-hue jitter, or
    # softer targets, generalise better to cells it has not seen?
    "0.35-all-16-160-cosine-strong": candidate(0.35, 160, 16, schedule="cosine"),
    # the default before 128 px:
    "0.35-all-16-160-cosine-ls": candidate(0.35, 160, 16, label_smoothing=0.1, schedule="cosine"),
    # The wider network again, on cells held out by photograph and with the default's label smoothing:
    # its earlier tie with 0.35-all-16 came from the leaky validation.
    "1.0-all-8-160-cosine-ls": candidate(1.0, 160, 8, label_smoothing=0.1, schedule="cosine"),
    # The lowest input size that does not hurt? 128 px fine-tuned in 0.8 of 160's time and validated
    # first, so it became the default; on TEST the two were level (87.6% against 87.9%).
    # the default before the warm-up:
    "0.35-all-16-128-cosine-ls": candidate(0.35, 128, 16, label_smoothing=0.1, schedule="cosine"),
    # In the 128-px benchmark TEST fell after the second epoch (81.5% then 78.8%), and rose to 85.7% only
    # after the third, which missed the time-to-85% target by about a minute; 160 px dipped there too.
    # The first epoch takes the full learning rate with Adam's moment estimates still empty: does one
    # epoch of linear warm-up learn more smoothly? It validated first (90.8% with flips, log loss 0.404,
    # with the augmentation still in tf.data); its row is the rerun with the augmentation in the
    # training step, as the kit now trains.
    "0.35-all-16-128-cosine-ls-warmup": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                  schedule="cosine"),  # the default
    # Ensembles gained nothing on validation (`--ensemble`: the default with the 128-px run without
    # warm-up 90.3% with flips, log loss 0.414, against the default's 91.1%, 0.401 alone). The
    # lowest input size that does not hurt, then: 128 px validated ahead of 160; does 96 px (MobileNetV2's
    # smallest standard size, about half of 128's pixels) hold up? (89.5% with flips, log loss 0.420: lower.)
    "0.35-all-16-96-cosine-ls-warmup": candidate(0.35, 96, 16, label_smoothing=0.1, warmup=1.0, schedule="cosine"),
    # Longer: 8 -> 16 epochs helped on held-out cells (log loss 0.85 -> 0.78 at 160 px) and the search
    # for epochs stopped at 16 for the course's sake, when an epoch took 95 s; it takes 55 s since the
    # pipeline fixes. Rule set before running it: 24 epochs replace 16 only if their log loss with
    # flips is lower by more than a rerun of one recipe moved (0.038) and their accuracy is not lower;
    # else the cheaper 16 stay. (91.3% with flips, log loss 0.376 against 0.401: 16 stay.)
    "0.35-all-24-128-cosine-ls-warmup": candidate(0.35, 128, 24, label_smoothing=0.1, warmup=1.0,
                                                  schedule="cosine"),
    # Is 24 epochs' small lead real? The same pair on other validation cells (seed 7). Rule set before
    # running them: if 24 epochs again validate with a lower log loss with flips and an accuracy not
    # lower, their lead holds on two splits and they become the next default to benchmark; else 16 stay.
    # (24: 94.9% with flips, log loss 0.255; 16: 94.4%, 0.276. The lead held: the next default. As the
    # default for one benchmark, 24 epochs scored 87.9% on TEST against 16's 87.8%, in 1.6x the
    # time, so the cheaper 16 stayed.)
    "0.35-all-16-128-cosine-ls-warmup-seed7": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                        schedule="cosine", seed=7),
    "0.35-all-24-128-cosine-ls-warmup-seed7": candidate(0.35, 128, 24, label_smoothing=0.1, warmup=1.0,
                                                        schedule="cosine", seed=7),
    # Fine-tuning the top of the base only (blocks 13-16 and the last convolution: 40 layers), on cells
    # held out by photograph: the leaky split ranked it below the whole base, but that split rewarded
    # memorising cells, which fewer free weights may do less of. Rule set before running it: it
    # replaces the default if its log loss with flips is lower and its accuracy with flips not lower.
    # (77.1% with flips, log loss 0.568: far below.)
    "0.35-top40-16-128-cosine-ls-warmup": candidate(0.35, 128, 16, 40, label_smoothing=0.1, warmup=1.0,
                                                    schedule="cosine"),
    # Half the fine-tuning rate (5e-5). Training accuracy passes 99% by the eighth epoch while TEST
    # stopped rising after the eleventh of 24: the whole base learns the training cells by heart.
    # A lower rate moves the ImageNet weights less. Rule set before running it: it replaces the
    # default only if its log loss with flips is lower by more than a rerun moved (0.038) and its
    # accuracy with flips is not lower; else the default stays. (86.8% with flips, log loss 0.465
    # against 91.1%, 0.401: lower on every measure, the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-lr5e-5": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                         schedule="cosine", fine_tune_learning_rate=5e-5),
    # Half the rate learned new cells less well; does twice the rate (2e-4) learn them better? Rule set
    # before running it: it replaces the default only if its log loss with flips is lower by more than
    # a rerun moved (0.038) and its accuracy with flips is not lower; else the default stays. (88.3%
    # with flips, log loss 0.392 against 91.1%, 0.401: log loss lower by less than a rerun moves,
    # accuracy lower: the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-lr2e-4": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                         schedule="cosine", fine_tune_learning_rate=2e-4),
    # Neither rate changed what the network learns of new cells; a regulariser might. Mixup blends
    # each training image and its targets with another's (share from Beta(0.2, 0.2): most images stay
    # mostly themselves), so the network cannot simply learn the training cells by heart. Rule set
    # before running it: it replaces the default only if its log loss with flips is lower by more
    # than a rerun moved (0.038) and its accuracy with flips is not lower; else the default stays.
    # (82.7% with flips, log loss 0.773 against 91.1%, 0.401: far lower, the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-mixup0.2": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                           schedule="cosine", mixup=0.2),
    # On TEST nearly all the wrong images are whole cells called neutrophil for eosinophil or the
    # reverse, and on validation eosinophils are the weakest class (83.5% with flips): the two differ
    # most in the colour of their granules, which the colour jitter (contrast, brightness, hue)
    # varies. Does the network tell them apart better without it? Rule set before running it: it
    # replaces the default only if its log loss with flips is lower by more than a rerun moved
    # (0.038), its accuracy with flips is not lower and its accuracy under the shifts is not lower
    # (the issue asks for colour augmentation for robustness); else the default stays. (91.7% with
    # flips, log loss 0.406, 84.1% under the shifts, against 91.1%, 0.401, 83.9%: log loss not lower,
    # eosinophil recall 81.7% against 83.5%, so the jitter was not what blurred them; the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-nocolour": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                           schedule="cosine"),
    # Every regulariser so far left the missed cells missed; the last untried one keeps the whole
    # base close to ImageNet rather than freezing part of it or slowing it all: L2-SP, each step
    # pulling every weight back by 0.1% of its distance from where fine-tuning began at the peak
    # rate (Config.anchor_pull 10: the pull of L2-SP's paper). Rule set before running it: it
    # replaces the default only if its log loss with flips is lower by more than a rerun moved
    # (0.038), its accuracy with flips is not lower and its accuracy under the shifts is not lower;
    # else the default stays. (88.8% with flips, log loss 0.455, 81.7% under the shifts, against
    # 91.1%, 0.401, 83.9%: lower on every measure, the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-l2sp10": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                         schedule="cosine", anchor_pull=10.0),
    # The base normalises every layer with ImageNet's statistics, frozen, while stained smears are
    # nothing like ImageNet's photographs. AdaBN re-estimates them on the training crops before the
    # head trains (Config.recalibrate_batchnorm), a classic remedy for a change of domain. Rule set
    # before running it: it replaces the default only if its log loss with flips is lower by more
    # than a rerun moved (0.038), its accuracy with flips is not lower and its accuracy under the
    # shifts is not lower; else the default stays. (89.5% with flips, log loss 0.406, 83.0% under the
    # shifts, against 91.1%, 0.401, 83.9%: level, the default stays.)
    "0.35-all-16-128-cosine-ls-warmup-adabn": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                        schedule="cosine", recalibrate_batchnorm=True),
    # Random erasing: half the training crops lose one random rectangle (2% to 33% of the crop) to
    # noise, so no single part of a cell (a lobe, a patch of granules) can decide its class alone;
    # the paper's share, 0.5. (A larger crop context was not tried: the default's crops already hold
    # the whole white cell with a margin of red cells, so a larger box adds only red cells.) Rule set
    # before running it: it replaces the default only if its log loss with flips is lower by more
    # than a rerun moved (0.038), its accuracy with flips is not lower and its accuracy under the
    # shifts is not lower; else the default stays. (85.9% with flips, log loss 0.417, 82.2% under the
    # shifts, against 91.1%, 0.401, 83.9%: lower on every measure, the default stays. It learned the
    # training cells less by heart, 95.9% in its last epoch, and missed 8 validation cells, among
    # them the default's 3.)
    "0.35-all-16-128-cosine-ls-warmup-erasing0.5": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                             schedule="cosine"),
    # 192 px was judged only on the leaky validation split. The lowest input size that does not hurt
    # is the aim, and 160 px was level with 128 on TEST; does 192 (2.25 times 128's pixels, a
    # fine-tuning of about 35 min) see the granules that tell eosinophils from neutrophils better?
    # Rule set before running it: it replaces the default only if its log loss with flips is lower by
    # more than a rerun moved (0.038), its accuracy with flips is not lower and its accuracy under the
    # shifts is not lower; else the cheaper 128 px stays. (87.7% with flips, log loss 0.434, 83.6% under
    # the shifts, against 91.1%, 0.401, 83.9%, in twice the fine-tuning time: 128 px stays.)
    "0.35-all-16-192-cosine-ls-warmup": candidate(0.35, 192, 16, label_smoothing=0.1, warmup=1.0, schedule="cosine"),
    # Per-crop stain normalisation (Config.stain_norm): each crop's colour channels standardised on
    # their own mean and spread in place of MobileNetV2's fixed scaling, the usual remedy in
    # pathology for stainings that differ from slide to slide. The missed cells are whole
    # photographs, each with its own staining; if the network keys on a photograph's overall colour,
    # this takes that cue away, and the issue asks for robustness to other labs' stain and
    # brightness. Rule set before running it: it replaces the default only if its log loss with
    # flips is lower by more than a rerun moved (0.038), its accuracy with flips is not lower and its
    # accuracy under the shifts is not lower; else the default stays. (91.2% with flips, log loss
    # 0.396, 84.6% under the shifts, against 91.1%, 0.401, 83.9%: level, the default stays. Darker
    # images 89.7% against 85.5%, hue +0.05 80.4% against 83.3%; it missed the default's 3 validation
    # cells and one more; averaged with the default, 92.3% / 0.391.)
    "0.35-all-16-128-cosine-ls-warmup-stain": candidate(0.35, 128, 16, label_smoothing=0.1, warmup=1.0,
                                                        schedule="cosine", stain_norm=True),
    "0.35-all-8-192": candidate(0.35, 192, 8, schedule="plateau"),
    "1.0-top40-6": candidate(1.0, 128, 6, 40, schedule="plateau"),
    "1.0-all-6": candidate(1.0, 128, 6, schedule="plateau"),
}
STRONG = {"zoom": 0.3, "hue": 0.08}  # stronger scale and stain-hue jitter than hl.augment.build's defaults
AUGMENTATION: dict[str, dict] = {  # per candidate
    "0.35-all-8-strong": STRONG,
    "0.35-all-8-160-strong": STRONG,
    "0.35-all-16-160-cosine-strong": STRONG,
    "0.35-all-16-128-cosine-ls-warmup-nocolour": {"contrast": 0, "brightness": 0, "hue": 0},
    "0.35-all-16-128-cosine-ls-warmup-erasing0.5": {"erasing": 0.5},
}
# Share of the training cells a candidate keeps: a learning curve, to see whether more cells help
# (which decides whether refitting on all of TRAIN is worth its time).
TRAIN_CELLS: dict[str, float] = {"0.35-all-8-160-cosine-fewer": 0.75}
# How the validation cells were held out. Runs before 2026-11-26 grouped images by the number in
# their file names, which is not the cell (see hematolib.data.original_of): their validation cells
# had copies in training, and their rows carry no "grouping".
GROUPING = "photograph"
MODELS = OUT.parent / "candidates"  # each candidate's trained model, to score it again without retraining


def network_view(model, val):
    """What the network of a cropping `model` sees of the validation records (float32 crops, from
    the crop cache), and that network (one view; hl.model.with_flips adds the other three)."""
    return hl.train.extract_crops(model, val, verbose=0).astype(np.float32), hl.model.network_of(model)


def score(model, val) -> dict:
    """Validation accuracy, log loss and recall, from one view and with flips (whatever
    config.flips says), and accuracy under the robustness shifts (one view; applied to the crops:
    stain hue, brightness, scale)."""
    cells, network = network_view(model, val)
    labels, groups = hl.data.labels_of(val), hl.data.groups_of(val)
    plain, flipped = (m.predict(cells, verbose=0) for m in (network, hl.model.with_flips(network)))
    report, report_tta = (hl.evaluate.evaluate(p, labels, groups, "VALIDATION") for p in (plain, flipped))
    shifted = {name: float((network.predict(np.asarray(hl.augment.shift(cells, **kw)), verbose=0).argmax(1)
                            == labels).mean())
               for name, kw in hl.augment.ROBUSTNESS_SHIFTS.items() if kw}
    return {"val": report.accuracy, "val_ci": [report.ci_low, report.ci_high],
            "val_cells_right": report.per_original_accuracy,
            "val_tta": report_tta.accuracy,
            "val_log_loss": report.log_loss, "val_log_loss_tta": report_tta.log_loss,
            "val_recall": {c: m["recall"] for c, m in report.per_class.items()},
            "val_recall_tta": {c: m["recall"] for c, m in report_tta.per_class.items()},
            "val_shifted": shifted, "val_shifted_mean": float(np.mean(list(shifted.values())))}


def run(name: str, config: Config) -> dict:
    """Train one candidate and score it on the grouped validation cells."""
    ds = hl.data.open_dataset(allow_synthetic=False)
    train, val = hl.recipe.split(ds, config)
    if name in TRAIN_CELLS:  # a seeded, class-stratified share of the training cells
        train, _ = hl.data.split_by_original(train, 1 - TRAIN_CELLS[name], config.seed)
    augment = hl.augment.build(seed=config.seed, **AUGMENTATION.get(name, {}))
    trained = hl.recipe.fit(train, val, config, augment=augment, verbose=2)
    model, (head, tuned) = trained.model, trained.histories
    MODELS.mkdir(parents=True, exist_ok=True)
    model.save(MODELS / f"{name}.keras")
    return {"name": name, "grouping": GROUPING, "config": config.to_dict(), "augmentation": AUGMENTATION.get(name, {}),
            "train_cells": len({r.original for r in train}), "train_share": TRAIN_CELLS.get(name, 1.0),
            "val_head_best": head.best(),
            "val_per_epoch": tuned.metrics["val_accuracy"], "val_loss_per_epoch": tuned.metrics["val_loss"],
            **score(model, val), "head_seconds": trained.seconds["head"],
            "fine_tune_seconds": trained.seconds["fine-tuning"]}


CROSS_VALIDATION = PROJECT_DIR / "benchmarks" / "cross-validation.json"  # published pooled results


def cross_validate(name: str, config: Config, k: int = 5, ds=None, verbose: int = 2) -> dict:
    """Grouped k-fold cross-validation of a candidate on TRAIN (`hl.data.folds_by_original`): k
    runs of its recipe, each validated on a different k-th of the cells, and the validation
    predictions of all k pooled, so that every TRAIN cell is scored once by a model that never saw
    it. One held-out fifth is 54 cells, and which 54 moved the estimate by 3 points; the pooled
    estimate rests on all 272. TEST is never read."""
    ds = ds or hl.data.open_dataset(allow_synthetic=False)
    probs, labels, groups, folds = [], [], [], []
    for i, (train, val) in enumerate(hl.data.folds_by_original(ds.train, k, config.seed)):
        augment = hl.augment.build(seed=config.seed, **AUGMENTATION.get(name, {}))
        trained = hl.recipe.fit(train, val, config, augment=augment, verbose=verbose)
        cells, network = network_view(trained.model, val)
        p = (hl.model.with_flips(network) if config.flips else network).predict(cells, verbose=0)
        y, g = hl.data.labels_of(val), hl.data.groups_of(val)
        fold = hl.evaluate.evaluate(p, y, g, f"fold {i + 1}")
        folds.append({"cells": fold.n_originals, "images": fold.n_images, "accuracy": fold.accuracy,
                      "log_loss": fold.log_loss, "cells_missed": fold.cells_missed,
                      "seconds": sum(trained.seconds.values())})
        probs.append(p), labels.append(y), groups.append(g)
        print(f"fold {i + 1} of {k}: {fold.n_originals} cells, accuracy {fold.accuracy:.1%}, "
              f"log loss {fold.log_loss:.3f}, missed {len(fold.cells_missed)} cells", flush=True)
    pooled = hl.evaluate.evaluate(np.concatenate(probs), np.concatenate(labels), np.concatenate(groups),
                                  f"{k}-fold cross-validation")
    return {"name": name, "k": k, "grouping": GROUPING, "config": config.to_dict(),
            "augmentation": AUGMENTATION.get(name, {}), "pooled": pooled.to_dict(), "folds": folds}


def ensemble(names: list[str]) -> dict:
    """Validation accuracy and log loss of the mean prediction (four views each) of candidates'
    saved models: what an ensemble of them would score, without training anything. The members
    must share a seed, so that they held out the same validation cells."""
    import keras

    seeds = {CANDIDATES[n].seed for n in names}
    if len(seeds) > 1:
        raise ValueError(f"an ensemble needs members that held out the same cells (one seed); "
                         f"{', '.join(names)} have seeds {sorted(seeds)}.")
    missing = [n for n in names if not (MODELS / f"{n}.keras").exists()]
    if missing:
        raise ValueError(f"no saved model for {', '.join(missing)}: run "
                         f"`python benchmarks/select_recipe.py {' '.join(missing)}` first.")
    _, val = hl.recipe.split(hl.data.open_dataset(allow_synthetic=False), CANDIDATES[names[0]])
    labels = hl.data.labels_of(val)
    hl.model.register_layers()
    members = []
    for name in names:
        model = keras.models.load_model(MODELS / f"{name}.keras", compile=False)
        cells, network = network_view(model, val)
        members.append(hl.model.with_flips(network).predict(cells, verbose=0))
    mean = np.mean(members, axis=0)
    return {"members": names, "val_tta": float((mean.argmax(1) == labels).mean()),
            "val_log_loss_tta": hl.evaluate.log_loss(mean, labels),
            **shared_mistakes(members, labels, hl.data.groups_of(val))}


def shared_mistakes(members: list[np.ndarray], labels: np.ndarray, groups: np.ndarray) -> dict:
    """Where ensemble members (their class probabilities per image) go wrong together: how many
    images each gets wrong, how many of the first member's mistakes each shares, and the cells
    (original photographs) every member misses (`hl.evaluate.cells_missed`). Averaging cannot fix
    mistakes all members make."""
    wrong = [p.argmax(1) != labels for p in members]
    missed = [hl.evaluate.cells_missed(~w, groups) for w in wrong]
    return {"wrong": [int(w.sum()) for w in wrong], "shared_with_first": [int((w & wrong[0]).sum()) for w in wrong],
            "cells_missed": [len(m) for m in missed], "cells": len(set(groups.tolist())),
            "cells_all_missed": [c for c in missed[0] if all(c in m for m in missed)]}


def symmetries(cells: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of square crops (batch, S, S, 3): the 4 views of the kit's own FlipStack
    layer (as is, mirrored, upside down, both), then the same 4 of the transposed crops (the
    quarter turns and the diagonal mirrors)."""
    stack = hl.model.register_layers()["FlipStack"]()
    return [view for x in (cells, np.transpose(cells, (0, 2, 1, 3))) for view in np.split(np.asarray(stack(x)), 4)]


VIEW_SETS = {  # name -> (scales, how many of the symmetries)
    "one view": ((1.0,), 1), "4 flips (the default)": ((1.0,), 4), "8 symmetries": ((1.0,), 8),
    "4 flips x scales 0.9, 1, 1.1": ((0.9, 1.0, 1.1), 4), "8 symmetries x scales 0.9, 1, 1.1": ((0.9, 1.0, 1.1), 8)}


def views(path: Path) -> dict[str, dict]:
    """Validation scores of a saved held-out model (its metadata names its recipe, hence its
    validation cells) when it averages other test-time views than its own: more symmetries of the
    crop, and crops zoomed by 0.9 and 1.1. Nothing is trained."""
    model, info = hl.model.load(path)
    config = Config.from_dict(info.config)
    if not config.val_fraction:
        raise ValueError(f"{path} was trained on every TRAIN cell (a refit): it has no held-out cells to score.")
    _, val = hl.recipe.split(hl.data.open_dataset(allow_synthetic=False), config)
    labels, groups = hl.data.labels_of(val), hl.data.groups_of(val)
    validated_on = info.metrics.get("VALIDATION", {}).get("cells")
    if validated_on and validated_on != hl.evaluate.cells_id(groups):
        raise ValueError(f"{path} was validated on other cells than its recipe holds out from this dataset.")
    cells, network = network_view(model, val)
    probs = {scale: [network.predict(v, verbose=0) for v in
                     symmetries(cells if scale == 1.0 else np.asarray(hl.augment.shift(cells, scale=scale)))]
             for scale in (0.9, 1.0, 1.1)}
    out = {}
    for name, (scales, n) in VIEW_SETS.items():
        report = hl.evaluate.evaluate(np.mean([p for s in scales for p in probs[s][:n]], axis=0), labels, groups,
                                      "VALIDATION")
        out[name] = {"accuracy": report.accuracy, "log_loss": report.log_loss, "ece": report.ece,
                     "cells_right": report.per_original_accuracy}
    return out


MARKERS = ("<!-- selection -->", "<!-- /selection -->")


def grouping(row: dict) -> str:
    """How a run held out its validation cells (runs before the grouping was fixed carry none)."""
    return row.get("grouping", "file name")


def latest(rows: list[dict]) -> list[dict]:
    """The latest run of each candidate under each grouping."""
    return list({(r["name"], grouping(r)): r for r in rows}.values())


def table(rows: list[dict]) -> str:
    """A markdown table of the candidates (the latest run of each), honest validation first, then
    by log loss with flips."""
    import benchmark

    default_seed, default_rate = Config().seed, Config().fine_tune_learning_rate
    ranked = sorted(latest(rows), key=lambda r: (grouping(r) != GROUPING, r.get("val_log_loss_tta", float("inf"))))
    lines = ["| candidate | validation cells | validation accuracy, one view | with flips | log loss, flips "
             "| under shifts | fine-tuning |", "|---|---|---|---|---|---|---|"]
    for r in ranked:
        c, extra = r["config"], r.get("augmentation") or {}
        depth = "whole base" if c["fine_tune_layers"] in (None, 1000) else f"top {c['fine_tune_layers']}"
        schedule = ", cosine schedule, last epoch" if c.get("schedule") == "cosine" else ""
        schedule += f", {c['warmup_epochs']:g}-epoch warm-up" if c.get("warmup_epochs") else ""
        name = (f"`{r['name']}`: alpha {c['alpha']}, {c['image_size']} px, {depth} x {c['fine_tune_epochs']}"
                + schedule + (f", label smoothing {c['label_smoothing']}" if c.get("label_smoothing") else "")
                + (f", fine-tuning rate {c['fine_tune_learning_rate']:g}"
                   if c.get("fine_tune_learning_rate", default_rate) != default_rate else "")
                + benchmark.regularisers(c)
                + "".join(f", {k} {v}" for k, v in extra.items())
                + (f", {r['train_cells']} training cells" if r["name"] in TRAIN_CELLS else "")
                + (f", seed {c['seed']} (other validation cells)" if c.get("seed", default_seed) != default_seed
                   else ""))
        cells = "by photograph" if grouping(r) == GROUPING else "by file name (**leaky**)"

        def cell(key, fmt):
            return format(r[key], fmt) if key in r else "-"

        lines.append(f"| {name} | {cells} | {r['val']:.1%} | {cell('val_tta', '.1%')} "
                     f"| {cell('val_log_loss_tta', '.3f')} | {cell('val_shifted_mean', '.1%')} "
                     f"| {r['fine_tune_seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def publish(rows: list[dict], raw: Path | None = None, doc: Path | None = None) -> Path:
    """Put the candidates' table between the selection markers of docs/recipe-search.md (the search
    the README's "How it was chosen" sums up), and the latest run
    of each candidate (under each grouping) in benchmarks/selection.json. The runs already
    published there count too, `rows` after them: a fresh clone has run only a candidate or two
    (build/ is not committed) and must not drop the others from the table."""
    import benchmark

    raw, doc = raw or benchmark.SELECTION, doc or SEARCH_DOC
    published = json.loads(raw.read_text()) if raw.exists() else []
    rows = latest(published + rows)
    hl.files.write_text_atomic(raw, json.dumps(rows, indent=1) + "\n")
    text = table(rows) + f"\n\nRaw figures: `benchmarks/{raw.name}`."
    hl.files.write_text_atomic(doc, benchmark.with_table(doc.read_text(), text, MARKERS))
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    parser.add_argument("--publish", "--readme", action="store_true", dest="publish",
                        help="train nothing: put the table of the candidates run so far in docs/recipe-search.md")
    parser.add_argument("--ensemble", action="store_true",
                        help="train nothing: score the mean prediction of the named candidates' saved models")
    parser.add_argument("--views", metavar="MODEL", type=Path,
                        help="train nothing: score a saved held-out model (notebook 04 with REFIT = False, "
                             "train --holdout) on its validation cells with other test-time views")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="cross-validate the one named candidate over K folds of the TRAIN cells (K runs) "
                             f"and write the pooled result to benchmarks/{CROSS_VALIDATION.name}")
    args = parser.parse_args(argv)
    if args.folds is not None:
        if len(args.names) != 1 or args.names[0] not in CANDIDATES:
            parser.error(f"--folds needs one candidate from: {', '.join(CANDIDATES)}")
        try:
            result = cross_validate(args.names[0], CANDIDATES[args.names[0]], args.folds)
        except ValueError as exc:  # fewer than 2 folds, or more folds than cells
            parser.error(str(exc))
        hl.files.write_text_atomic(CROSS_VALIDATION, json.dumps(result, indent=1) + "\n")
        r = result["pooled"]
        print(f"{args.names[0]}, {args.folds}-fold cross-validation over {r['n_originals']} cells: accuracy "
              f"{r['accuracy']:.1%} (95% CI {r['ci_low']:.1%}-{r['ci_high']:.1%}), log loss {r['log_loss']:.3f}, "
              f"cells mostly right {r['per_original_accuracy']:.1%}; written to {CROSS_VALIDATION}")
        return 0
    if args.views:
        try:
            rows = views(args.views)
        except ValueError as exc:  # a model file it cannot read, or one with no held-out cells
            parser.error(str(exc))
        for name, r in rows.items():
            print(f"{name:36s} accuracy {r['accuracy']:.1%}  log loss {r['log_loss']:.3f}  "
                  f"calibration error {r['ece']:.1%}  cells right {r['cells_right']:.1%}")
        return 0
    if args.ensemble:
        if len(args.names) < 2 or any(n not in CANDIDATES for n in args.names):
            parser.error(f"--ensemble needs two or more candidates from: {', '.join(CANDIDATES)}")
        try:
            row = ensemble(args.names)
        except ValueError as exc:
            parser.error(str(exc))
        print(f"ensemble of {' + '.join(args.names)}: validation with flips {row['val_tta']:.1%}, "
              f"log loss {row['val_log_loss_tta']:.4f}")
        for name, wrong, shared, cells in zip(args.names, row["wrong"], row["shared_with_first"],
                                              row["cells_missed"]):
            print(f"  {name}: {wrong} validation images wrong, {shared} of them also wrong in {args.names[0]}; "
                  f"misses {cells} of the {row['cells']} cells (at most half their images right)")
        print(f"  cells every member misses: {', '.join(row['cells_all_missed']) or 'none'}")
        return 0
    if args.publish:
        publish([json.loads(line) for line in OUT.read_text().splitlines() if line.strip()])
        return 0
    unknown = [n for n in args.names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for name in args.names or CANDIDATES:
        row = run(name, CANDIDATES[name])
        with OUT.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{name}: validation {row['val']:.1%} (with flips {row['val_tta']:.1%}), per epoch "
              + " ".join(f"{v:.3f}" for v in row["val_per_epoch"])
              + f"; log loss {row['val_log_loss']:.3f} (flips {row['val_log_loss_tta']:.3f})"
              + f"; under shifts {row['val_shifted_mean']:.1%}"
              + f"; fine-tuning {row['fine_tune_seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
