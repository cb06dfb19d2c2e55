"""`make cross-validate`: the kit's recipe cross-validated over every TRAIN cell of the Kaggle lab.

k folds grouped by cell (`hl.splits.folds_by_original`, the recipe's seed): each fold trains the
recipe on the other folds' cells and scores its own, with the model's four flipped views, so every
cell is scored once by a model that never saw it. TEST is never read.

A fold is a whole training, so each finished fold is kept in build/cross-validation/<name>/, and
running the same command again starts at the first fold not yet kept; `--only 1,2` runs just those.
When every fold is kept, the pooled result is written to build/cross-validation/<name>.json;
`--publish` writes it to benchmarks/ instead, where the README and the model card read the
default recipe's (`benchmarks/cross-validation.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import hematolib as hl
from hematolib.config import PROJECT_DIR, Config

BUILD = PROJECT_DIR / "build" / "cross-validation"  # each recipe's folds, and its result until published
PUBLISHED = PROJECT_DIR / "benchmarks"
GROUPING = "photograph"  # the cell: every image of one photographed cell is in the same fold
K = 5


def name_of(config: Config, k: int = K) -> str:
    """'default' for the kit's recipe over five folds, else what differs: 'image_size-160', 'k-3'."""
    default = Config().to_dict()
    changed = [f"{key}-{value}" for key, value in config.to_dict().items() if default[key] != value]
    changed += [f"k-{k}"] if k != K else []
    return "-".join(changed) or "default"


def result_path(name: str, publish: bool = False) -> Path:
    if not publish:
        return BUILD / f"{name}.json"
    return PUBLISHED / ("cross-validation.json" if name == "default" else f"cross-validation-{name}.json")


def commit() -> str | None:
    """The kit's git commit, when it is a git checkout: kept with each fold, as folds may run days apart."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def train_and_score(train, val, config: Config) -> np.ndarray:
    """The recipe trained on `train` (seeded, in a fresh Keras session), and its class probabilities for `val`."""
    import keras

    keras.backend.clear_session()
    hl.train.set_seed(config.seed)
    model = hl.recipe.fit(train, val, config, verbose=2).model
    return hl.inference.predict_records(model, val)


def fold_file(folds_dir: Path, i: int, k: int) -> Path:
    return folds_dir / f"fold-{i}-of-{k}.json"


def image_names(records) -> list[str]:
    """Each record as split/class/file, as hematolib/originals.csv names it: the same on every machine."""
    return [f"{r.split}/{r.class_name}/{r.path.name}" for r in records]


def kept_fold(path: Path, config: Config, val) -> dict | None:
    """The fold kept at `path`, if the same recipe scored the same images; else None (it runs again).
    A setting added to Config since the fold ran counts at its default."""
    if not path.exists():
        return None
    fold = json.loads(path.read_text())
    same_recipe = Config.from_dict(fold["config"]).to_dict() == config.to_dict()
    return fold if same_recipe and fold["images_scored"] == image_names(val) else None


def run_fold(i: int, k: int, train, val, config: Config, folds_dir: Path, score=train_and_score) -> dict:
    """Train and score fold `i`, and keep its predictions."""
    start = time.perf_counter()
    probs = score(train, val, config)
    report = hl.evaluate.evaluate(probs, hl.data.labels_of(val), hl.data.groups_of(val), f"fold {i} of {k}")
    fold = {"fold": i, "config": config.to_dict(), "commit": commit(), "cells": report.n_originals,
            "images": report.n_images, "accuracy": report.accuracy, "log_loss": report.log_loss,
            "cells_missed": report.cells_missed, "seconds": time.perf_counter() - start,
            "images_scored": image_names(val), "probs": np.round(probs, 5).tolist()}
    hl.files.write_text_atomic(fold_file(folds_dir, i, k), json.dumps(fold))
    return fold


def pooled(folds: list[dict], val_sets: list, config: Config, k: int, name: str) -> dict:
    """Every fold's predictions scored together: each TRAIN cell once."""
    probs = np.concatenate([np.asarray(f["probs"]) for f in folds])
    labels = np.concatenate([hl.data.labels_of(v) for v in val_sets])
    groups = np.concatenate([hl.data.groups_of(v) for v in val_sets])
    report = hl.evaluate.evaluate(probs, labels, groups, f"{k}-fold cross-validation")
    keep = ("cells", "images", "accuracy", "log_loss", "cells_missed", "seconds", "commit")
    return {"name": name, "k": k, "grouping": GROUPING, "config": config.to_dict(),
            "augmentation": hl.augment.describe(hl.recipe.augmenter(config)) if config.fine_tune_epochs else {},
            "pooled": report.to_dict(), "folds": [{key: f.get(key) for key in keep} for f in folds]}


def cross_validate(ds, config: Config, k: int = K, only: set[int] | None = None, folds_dir: Path | None = None,
                   score=train_and_score) -> tuple[dict | None, list[int]]:
    """Run the folds in `only` (all by default) that are not kept yet. Returns the pooled result
    once all `k` are kept (else None), and the folds still to run. `score(train, val, config)`
    returns the class probabilities for `val`."""
    name = name_of(config, k)
    folds_dir = folds_dir or BUILD / name
    splits = hl.splits.folds_by_original(ds.train, k, config.seed)
    folds = []
    for i, (train, val) in enumerate(splits, start=1):
        fold = kept_fold(fold_file(folds_dir, i, k), config, val)
        if fold is None and (only is None or i in only):
            print(f"fold {i} of {k}: training on {len(train)} images, scoring {len(val)}", flush=True)
            fold = run_fold(i, k, train, val, config, folds_dir, score)
        if fold is not None:
            print(f"fold {i} of {k}: {fold['cells']} cells, accuracy {fold['accuracy']:.1%}, "
                  f"{len(fold['cells_missed'])} cells missed, {fold['seconds'] / 60:.0f} min", flush=True)
        folds.append(fold)
    missing = [i for i, f in enumerate(folds, start=1) if f is None]
    if missing:
        return None, missing
    commits = sorted({f.get("commit") or "unknown" for f in folds})
    if len(commits) > 1:
        print(f"note: the folds were run at different commits of the kit ({', '.join(commits)}).")
    return pooled(folds, [val for _, val in splits], config, k, name), []


def parse_only(text: str | None, k: int) -> set[int] | None:
    if not text:
        return None
    try:
        chosen = {int(part) for part in text.split(",")}
    except ValueError:
        raise SystemExit(f"--only takes fold numbers separated by commas, like 1,2; got {text!r}.") from None
    if not chosen <= set(range(1, k + 1)):
        raise SystemExit(f"--only: the folds are numbered 1 to {k}; got {text!r}.")
    return chosen


def command(image_size: int, k: int) -> str:
    """The command that runs this recipe's folds, as a user would type it."""
    args = ([f"--image-size {image_size}"] if image_size != Config().image_size else []) + (
        [f"--n-folds {k}"] if k != K else [])
    return "make cross-validate" + (f" ARGS={shlex.quote(' '.join(args))}" if args else "")


def main(argv: list[str] | None = None, score=train_and_score) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=Config().image_size,
                        help="side of the square the network sees (the recipe's: %(default)s)")
    parser.add_argument("--n-folds", type=int, default=K, help="how many folds the cells are dealt to (%(default)s)")
    parser.add_argument("--only", help="run only these folds, numbered from 1, like 1,2 (the others when run later)")
    parser.add_argument("--publish", action="store_true",
                        help="write the pooled result to benchmarks/, for the README and the model card")
    args = parser.parse_args(argv)
    if args.n_folds < 2:
        raise SystemExit(f"--n-folds: cross-validation needs at least 2 folds; got {args.n_folds}.")
    only = parse_only(args.only, args.n_folds)
    config = dataclasses.replace(Config(), image_size=args.image_size)
    ds = hl.data.open_dataset(allow_synthetic=False)
    result, missing = cross_validate(ds, config, k=args.n_folds, only=only, score=score)
    if result is None:
        print(f"{len(missing)} of {args.n_folds} folds still to run (fold {', '.join(map(str, missing))}): "
              f"run `{command(args.image_size, args.n_folds)}` again; the kept folds are not run twice.")
        return 0
    out = result_path(result["name"], args.publish)
    hl.files.write_json_atomic(out, result)
    report = result["pooled"]
    print(f"{args.n_folds}-fold cross-validation over {report['n_originals']} cells: accuracy "
          f"{report['accuracy']:.1%} (95% CI {report['ci_low']:.1%}-{report['ci_high']:.1%}), "
          f"log loss {report['log_loss']:.3f}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
