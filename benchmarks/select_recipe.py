"""Choose the default recipe on the grouped validation split; TEST is never read here.

Each candidate trains on TRAIN minus the validation cells (grouped by original cell, as the kit
always splits) and is scored on those held-out cells, per fine-tuning epoch, with and without
test-time flips. One JSON line per candidate goes to build/benchmark/selection.jsonl.

    python benchmarks/select_recipe.py                 # every candidate (2 hours or more on 2 cores)
    python benchmarks/select_recipe.py 0.35-all-8      # one of them (about 10 min; alpha 1.0: 25 min or more)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import hematolib as hl
from hematolib.config import PROJECT_DIR, Config

OUT = PROJECT_DIR / "build" / "benchmark" / "selection.jsonl"

CANDIDATES: dict[str, Config] = {
    "0.35-top40-4": Config(fine_tune_epochs=4, fine_tune_layers=40),  # the previous default's depth and length
    "0.35-top40-8": Config(fine_tune_epochs=8, fine_tune_layers=40),
    "0.35-all-8": Config(fine_tune_epochs=8, fine_tune_layers=None),
    "1.0-top40-6": Config(alpha=1.0, fine_tune_epochs=6, fine_tune_layers=40),
    "1.0-all-6": Config(alpha=1.0, fine_tune_epochs=6, fine_tune_layers=None),
    "0.35-all-8-ls": Config(fine_tune_epochs=8, fine_tune_layers=None, label_smoothing=0.1),
}


def run(name: str, config: Config) -> dict:
    """Train one candidate and score it on the grouped validation cells."""
    ds = hl.data.open_dataset(allow_synthetic=False)
    train, val = hl.recipe.split(ds, config)
    model = hl.model.build(alpha=config.alpha, image_size=config.image_size, dropout=config.dropout,
                           seed=config.seed, crop=config.crop)
    start = time.perf_counter()
    head = hl.train.fit_head(model, train, val, config, verbose=0)
    head_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tuned = hl.train.fine_tune(model, train, val, config, augment=hl.augment.build(seed=config.seed), verbose=2)
    tune_seconds = time.perf_counter() - start
    cells = hl.train.extract_crops(model, val, verbose=0).astype(np.float32)
    labels = hl.data.labels_of(val)
    network = hl.model.network_of(model)
    plain = network.predict(cells, verbose=0)
    flipped = np.mean([network.predict(v, verbose=0) for v in
                       (cells, cells[:, ::-1], cells[:, :, ::-1], cells[:, ::-1, ::-1])], axis=0)
    groups = hl.data.groups_of(val)
    report, report_tta = (hl.evaluate.evaluate(p, labels, groups, "VALIDATION") for p in (plain, flipped))
    return {"name": name, "config": config.to_dict(), "val_head_best": head.best(),
            "val_per_epoch": tuned.metrics["val_accuracy"], "val_loss_per_epoch": tuned.metrics["val_loss"],
            "val": report.accuracy, "val_ci": [report.ci_low, report.ci_high],
            "val_cells_right": report.per_original_accuracy,
            "val_tta": report_tta.accuracy,
            "val_recall": {c: m["recall"] for c, m in report.per_class.items()},
            "val_recall_tta": {c: m["recall"] for c, m in report_tta.per_class.items()},
            "head_seconds": head_seconds, "fine_tune_seconds": tune_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"candidates (default: all): {', '.join(CANDIDATES)}")
    args = parser.parse_args(argv)
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
              + f"; fine-tuning {row['fine_tune_seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
