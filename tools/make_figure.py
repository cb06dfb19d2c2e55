"""`make figure`: the README's picture, made by the kit from the course's model.

    python tools/make_figure.py [--model models/hematovision.keras] [--out docs/images/cells.png]

One TEST_SIMPLE cell of each class: the smear with the box the model crops, and the Grad-CAM of
its prediction over the crop. Needs the real dataset and a trained model (`make course`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hematolib as hl

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=hl.config.kaggle_model_path())
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "cells.png")
    parser.add_argument("--seed", type=int, default=0, help="which cell of each class")
    args = parser.parse_args(argv)
    ds = hl.data.open_dataset(allow_synthetic=False)
    model, _ = hl.model_file.load(args.model)
    fig = hl.plots.explained_cells(model, hl.data.cap_per_class(ds.test_simple, 1, seed=args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with hl.files.atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
