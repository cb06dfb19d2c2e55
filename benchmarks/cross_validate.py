"""`make cross-validate`: the kit's recipe cross-validated over every TRAIN cell.

Five folds grouped by cell (`hl.splits.folds_by_original`, the recipe's seed): each fold trains the
recipe on four fifths of the cells and scores the fifth, with the model's four flipped views, so
every cell is scored once by a model that never saw it. TEST is never read.

A fold takes as long as one training (about 20 minutes on a 2-core CPU at 128 px), so each finished
fold is kept in benchmarks/cross-validation/<name>/ and a later run starts where the last one
stopped; `--folds 1,2` runs only those. When every fold is there, the pooled result is written to
benchmarks/cross-validation.json (the default recipe, which the README quotes) or
benchmarks/cross-validation-<name>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

import hematolib as hl
from hematolib.config import PROJECT_DIR, Config

FOLDS_DIR = PROJECT_DIR / "benchmarks" / "cross-validation"
GROUPING = "photograph"  # the cell: every image of one photographed cell is in the same fold


def name_of(config: Config) -> str:
    """'default' for the kit's recipe, else what differs from it: 'image_size-160'."""
    default = Config().to_dict()
    changed = [f"{k}-{v}" for k, v in config.to_dict().items() if default[k] != v]
    return "-".join(changed) or "default"


def result_path(name: str) -> Path:
    suffix = "" if name == "default" else f"-{name}"
    return PROJECT_DIR / "benchmarks" / f"cross-validation{suffix}.json"


def train_and_score(train, val, config: Config) -> np.ndarray:
    """The recipe trained on `train` (seeded), and its class probabilities for `val`."""
    hl.train.set_seed(config.seed)
    model = hl.recipe.fit(train, val, config, verbose=2).model
    return hl.inference.predict_records(model, val)


def fold_file(folds_dir: Path, i: int, k: int) -> Path:
    return folds_dir / f"fold-{i}-of-{k}.json"


def image_names(records) -> list[str]:
    """Each record as split/class/file: the same on every machine."""
    return ["/".join(r.path.parts[-3:]) for r in records]


def kept_fold(path: Path, config: Config, val) -> dict | None:
    """The fold kept at `path`, if the same recipe scored the same images; else None (it runs again)."""
    if not path.exists():
        return None
    fold = json.loads(path.read_text())
    return fold if fold["config"] == config.to_dict() and fold["images_scored"] == image_names(val) else None


def run_fold(i: int, k: int, train, val, config: Config, folds_dir: Path, score=train_and_score) -> dict:
    """Train and score fold `i`, and keep its predictions (written atomically)."""
    start = time.perf_counter()
    probs = score(train, val, config)
    labels, groups = hl.data.labels_of(val), hl.data.groups_of(val)
    report = hl.evaluate.evaluate(probs, labels, groups, f"fold {i} of {k}")
    fold = {"fold": i, "config": config.to_dict(), "cells": report.cells, "n_cells": report.n_originals,
            "images": report.n_images, "accuracy": report.accuracy, "log_loss": report.log_loss,
            "cells_missed": report.cells_missed, "seconds": time.perf_counter() - start,
            "images_scored": image_names(val), "probs": np.round(probs, 5).tolist()}
    hl.files.write_json_atomic(fold_file(folds_dir, i, k), fold)
    return fold


def pooled(folds: list[dict], val_sets: list, config: Config, k: int, name: str) -> dict:
    """Every fold's predictions scored together: each TRAIN cell once."""
    probs = np.concatenate([np.asarray(f["probs"]) for f in folds])
    labels = np.concatenate([hl.data.labels_of(v) for v in val_sets])
    groups = np.concatenate([hl.data.groups_of(v) for v in val_sets])
    report = hl.evaluate.evaluate(probs, labels, groups, f"{k}-fold cross-validation")
    per_fold = [{"cells": f["n_cells"], "images": f["images"], "accuracy": f["accuracy"],
                 "log_loss": f["log_loss"], "cells_missed": f["cells_missed"], "seconds": f["seconds"]}
                for f in folds]
    return {"name": name, "k": k, "grouping": GROUPING, "config": config.to_dict(), "augmentation": {},
            "pooled": report.to_dict(), "folds": per_fold}


def cross_validate(ds, config: Config, k: int = 5, only: set[int] | None = None,
                   folds_dir: Path | None = None, score=train_and_score) -> dict | None:
    """Run the folds in `only` (all by default) that are not kept yet; the pooled result once all
    `k` are kept, else None. `score(train, val, config)` returns the probabilities for `val`."""
    name = name_of(config)
    folds_dir = folds_dir or FOLDS_DIR / name
    splits = hl.splits.folds_by_original(ds.train, k, config.seed)
    folds = []
    for i, (train, val) in enumerate(splits, start=1):
        fold = kept_fold(fold_file(folds_dir, i, k), config, val)
        if fold is None and (only is None or i in only):
            print(f"fold {i} of {k}: training on {len(train)} images, scoring {len(val)}", flush=True)
            fold = run_fold(i, k, train, val, config, folds_dir, score)
        if fold is not None:
            print(f"fold {i} of {k}: {fold['n_cells']} cells, accuracy {fold['accuracy']:.1%}, "
                  f"{len(fold['cells_missed'])} cells missed, {fold['seconds'] / 60:.0f} min", flush=True)
        folds.append(fold)
    missing = [i for i, f in enumerate(folds, start=1) if f is None]
    if missing:
        print(f"{len(missing)} of {k} folds still to run: --folds {','.join(map(str, missing))}")
        return None
    return pooled(folds, [val for _, val in splits], config, k, name)


def parse_folds(text: str | None, k: int) -> set[int] | None:
    if not text:
        return None
    try:
        chosen = {int(part) for part in text.split(",")}
    except ValueError:
        raise SystemExit(f"--folds takes fold numbers separated by commas, like 1,2; got {text!r}.") from None
    if not chosen <= set(range(1, k + 1)):
        raise SystemExit(f"--folds: the folds are numbered 1 to {k}; got {text!r}.")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=Config().image_size,
                        help="side of the square the network sees (the recipe's: %(default)s)")
    parser.add_argument("--k", type=int, default=5, help="number of folds (%(default)s)")
    parser.add_argument("--folds", help="run only these folds, numbered from 1: 1,2")
    args = parser.parse_args(argv)
    only = parse_folds(args.folds, args.k)
    config = dataclasses.replace(Config(), image_size=args.image_size)
    ds = hl.data.open_dataset(allow_synthetic=False)
    result = cross_validate(ds, config, k=args.k, only=only)
    if result is None:
        return 0
    out = result_path(result["name"])
    hl.files.write_json_atomic(out, result)
    report = result["pooled"]
    print(f"{args.k}-fold cross-validation over {report['n_originals']} cells: accuracy {report['accuracy']:.1%} "
          f"(95% CI {report['ci_low']:.1%}-{report['ci_high']:.1%}), log loss {report['log_loss']:.3f}; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
