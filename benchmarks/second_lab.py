"""`make benchmark-labs`: a model trained on the Kaggle lab alone (the course's recipe, and the same
with its colour channels jittered, as `python -m hematolib train --labs kaggle` trains it), the
first fine-tuned further on both labs (Kaggle and PBC; notebook 06's two-lab model), and one trained
on both labs from the start, each scored on validation and held-out cells of both labs, with the share of images each
flags as unlike its training cells.

Each runs the kit's default recipe with a fifth of each lab's cells held out for validation
(PBC: 60% train, 20% validation, 20% test, by cell): at 128 px, but at 160 px on both labs from
the start (`hl.recipe.both_labs_config`), as `python -m hematolib train` does. Choices are made on
the validation cells only, by the rule written in docs/second-lab.md before the run; TEST and the
PBC test cells are scored once, after training, for the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

import hematolib as hl
from hematolib.config import BOTH_LABS_IMAGE_SIZE, PROJECT_DIR, Config

RESULTS = PROJECT_DIR / "benchmarks" / "second-lab.json"
BUILD = PROJECT_DIR / "build" / "benchmark"  # the models it trains
FURTHER = "Kaggle, then both labs"  # the Kaggle-only model fine-tuned further on both labs: notebook 06's
JITTERED = "Kaggle only, colours jittered"  # python -m hematolib train --labs kaggle's recipe
TWO_LABS = (FURTHER, "both labs")  # the choices that train on the second lab's cells too
DOCS = (PROJECT_DIR / "docs" / "second-lab.md", PROJECT_DIR / "docs" / "model-card.md")
MARKERS = ("<!-- second-lab -->", "<!-- /second-lab -->")
README = PROJECT_DIR / "README.md"
README_MARKERS = ("<!-- second-lab:start -->", "<!-- second-lab:end -->")


def natural_photos() -> dict[str, list[np.ndarray]]:
    """Photographs that are not blood smears, from scikit-image's bundled samples (if installed)."""
    try:
        from skimage import data
    except ImportError:
        return {}
    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
    photos = []
    for name in names:
        try:
            photos.append(np.asarray(getattr(data, name)())[..., :3])
        except Exception:  # noqa: BLE001 - a sample missing from this version is skipped
            continue
    return {"natural photos (scikit-image samples)": photos} if photos else {}


def scored(model, name: str, records) -> dict:
    report = hl.inference.evaluate_records(model, records, name)[0]
    return {"accuracy": report.accuracy, "ci_low": report.ci_low, "ci_high": report.ci_high,
            "n_images": report.n_images, "n_originals": report.n_originals, "log_loss": report.log_loss,
            "recall": {c: m["recall"] for c, m in report.per_class.items()}}


def shown(path: Path) -> str:
    """`path` as the results file records it: from the project folder when it is inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


def trained_by_recipe(path: Path, train, config: Config):
    """The model at `path` and its training time, if the same recipe trained it on these cells."""
    model, info = hl.model_file.load(path)
    if info.data_fingerprint != hl.data.fingerprint(train):
        raise SystemExit(f"{path} was not trained on these cells.")
    theirs, ours = hl.Config.from_dict(info.config).to_dict(), config.to_dict()
    if theirs != ours:
        differ = ", ".join(f"{k} {theirs[k]} against {ours[k]}" for k in ours if theirs[k] != ours[k])
        raise SystemExit(f"{path} was not trained by this recipe: {differ}.")
    return model, info.metrics.get("train_seconds")


def run_choice(name: str, ds, train, val, config: Config, held_out: dict, foreign: dict,
               trained_model: Path | None = None, further_from: Path | None = None,
               further_epochs: int = hl.recipe.FURTHER_EPOCHS) -> dict:
    """Train the recipe on `train` (validated on `val`), or take `trained_model` (a model the same
    recipe trained on the same cells, as the course's notebooks 03-04 do), or fine-tune the model
    at `further_from` for `further_epochs` more epochs on `train` (notebook 06); then score
    every set and the flags."""
    seconds = None
    if further_from is not None:
        hl.train.set_seed(config.seed)  # then load, as notebook 06 does: the same model for the same seed
        model, _ = hl.model_file.load(further_from)
        start = time.perf_counter()
        hl.recipe.fine_tune_further(model, train, config, epochs=further_epochs)
        seconds = time.perf_counter() - start
    elif trained_model is not None:
        model, seconds = trained_by_recipe(trained_model, train, config)
    else:
        hl.train.set_seed(config.seed)
        start = time.perf_counter()
        model = hl.recipe.fit(train, val, config, verbose=1).model
        seconds = time.perf_counter() - start
    familiarity = hl.familiar.of_model(model, train, val)
    out = {"trained on": name, "image_size": config.image_size, "train_images": len(train), "train_seconds": seconds,
           "trained_by": shown(trained_model) if trained_model else "benchmarks/second_lab.py"
                         + (f", from {shown(further_from)}" if further_from else ""),
           "further_epochs": further_epochs if further_from else 0,
           "scores": {set_name: scored(model, set_name, records) for set_name, records in held_out.items()}}
    held_out_features = {set_name: hl.cache.features(model, records) for set_name, records in held_out.items()}
    flagged = {set_name: float(familiarity.unfamiliar(x).mean()) for set_name, x in held_out_features.items()}
    flagged |= {set_name: float(familiarity.unfamiliar(hl.labs.image_features(model, images)).mean())
                for set_name, images in foreign.items()}
    out["flagged_unfamiliar"] = flagged
    # as a refit calibrates it, with no validation cells: cross-fitted over the training cells
    refit_like = hl.familiar.of_model(model, train, [])
    out["flagged_unfamiliar_cross_fitted"] = {
        set_name: float(refit_like.unfamiliar(x).mean()) for set_name, x in held_out_features.items()}
    if trained_model is None and further_from is None:
        info = hl.recipe.model_info(config, ds, train, {})
        info.metrics["train_seconds"] = seconds
        hl.model_file.save(model, saved_as(name),
                           info, extras=hl.familiar.as_extras(familiarity))
    return out


def saved_as(name: str) -> Path:
    """Where the benchmark saves the model a choice trains: build/benchmark/Kaggle-only.keras, ..."""
    return BUILD / (re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") + ".keras")


def recipes(config: Config) -> dict[str, Config]:
    """Each choice's recipe: `config`; `config` with its colour channels jittered for the Kaggle lab
    alone, as the CLI trains it; and `config` at the larger input for both labs from the start."""
    return {"Kaggle only": config, JITTERED: hl.recipe.one_lab_config(config), FURTHER: config,
            "both labs": hl.recipe.both_labs_config(config)}


def markdown(results: dict) -> str:
    """The table: each training choice's accuracy on each set, and the share it flags."""
    choices = results["choices"]
    sets = list(choices[0]["scores"])
    lines = ["| | " + " | ".join(map(column, choices)) + " |", "|---|" + "---|" * len(choices)]
    for s in sets:
        cells = [f"{c['scores'][s]['accuracy']:.1%} ({c['scores'][s]['ci_low']:.1%}-{c['scores'][s]['ci_high']:.1%})"
                 for c in choices]
        lines.append(f"| {s} ({choices[0]['scores'][s]['n_originals']} cells) | " + " | ".join(cells) + " |")
    for s in choices[0]["flagged_unfamiliar"]:
        lines.append(f"| flagged unfamiliar: {s} | " + " | ".join(f"{c['flagged_unfamiliar'][s]:.1%}"
                                                                   for c in choices) + " |")
    for s in choices[0].get("flagged_unfamiliar_cross_fitted", {}):
        lines.append(f"| flagged unfamiliar, calibrated as a refit is: {s} | " + " | ".join(
            f"{c['flagged_unfamiliar_cross_fitted'][s]:.1%}" for c in choices) + " |")
    lines.append("| training time (2-core CPU) | " + " | ".join(training_time(c) for c in choices) + " |")
    return "\n".join(lines) + f"\n\nRun {results['date']} on {results['machine']}, `{results['command']}`."


def column(choice: dict) -> str:
    """A choice's column heading: what it trained on, and at which input size."""
    size = choice.get("image_size")
    return choice["trained on"] + (f", {size} px" if size else "")


def training_time(choice: dict) -> str:
    """A choice's training time for the table: a further fine-tuning's is on top of the model it began from."""
    if not choice.get("train_seconds"):
        return "(notebooks 03-04)"
    minutes = f"{choice['train_seconds'] / 60:.0f} min"
    return f"+{minutes} ({choice['further_epochs']} epochs)" if choice.get("further_epochs") else minutes


def readme_table(results: dict) -> str:
    """The README's rows: each choice on the other lab's held-out cells and on Kaggle TEST."""
    by = {c["trained on"]: c for c in results["choices"]}
    cells = by["Kaggle only"]["scores"]["PBC test"]["n_originals"]
    rows = [(f"PBC test cells ({cells}, never trained on)", "PBC test"),
            ("Kaggle TEST", "Kaggle TEST")]
    lines = ["| trained on | " + " | ".join(map(column, by.values())) + " |", "|---|" + "---|" * len(by)]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(f"{c['scores'][key]['accuracy']:.1%}" for c in by.values()) + " |")
    lines.append("| PBC test cells flagged as unlike the training images | "
                 + " | ".join(f"{c['flagged_unfamiliar']['PBC test']:.0%}" for c in by.values()) + " |")
    return "\n".join(lines) + f"\n\nMade by `make benchmark-labs` (`{RESULTS.relative_to(PROJECT_DIR)}`).\n"


def publish(results: dict) -> None:
    """Write the figures to benchmarks/ and the tables into the docs and the README, atomically."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish_results", PROJECT_DIR / "tools" / "publish_results.py")
    publisher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publisher)
    texts = {path: publisher.replace_between(path.read_text(), markdown(results) + "\n", MARKERS, str(path))
             for path in DOCS}
    texts[README] = publisher.replace_between(README.read_text(), readme_table(results), README_MARKERS, str(README))
    hl.files.write_text_atomic(RESULTS, json.dumps(results, indent=2, default=float) + "\n")
    for path, text in texts.items():
        hl.files.write_text_atomic(path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (60 images per class, 1 epoch of each "
                        "fine-tuning)")
    parser.add_argument("--republish", action="store_true", help="train nothing: write the tables from "
                        f"{RESULTS.relative_to(PROJECT_DIR)} into the docs and the README")
    parser.add_argument("--kaggle-model", type=Path, help="score this model as the Kaggle-only choice instead of "
                        "training it: models/hematovision.keras after `make course` (the same recipe and cells)")
    parser.add_argument("--both-model", type=Path, help="score this model as the both-labs choice instead of "
                        "training it: build/benchmark/both-labs.keras from an earlier run (at "
                        f"{BOTH_LABS_IMAGE_SIZE} px)")
    args = parser.parse_args(argv)
    if args.republish:
        publish(json.loads(RESULTS.read_text()))
        print(f"tables written from {RESULTS}")
        return 0
    config = Config(per_class=60, head_epochs=5, fine_tune_epochs=1) if args.quick else Config()
    ds = hl.data.open_dataset(allow_synthetic=False)
    pbc = hl.data.cap_per_class(hl.pbc.open_pbc().splits[hl.pbc.SPLIT], config.per_class, config.seed)
    pbc_train, pbc_val, pbc_test = hl.labs.split_cells(pbc, seed=config.seed)
    train, val = hl.recipe.split(ds, config)
    held_out = {"Kaggle validation": val, "PBC validation": pbc_val,
                "Kaggle TEST": hl.data.cap_per_class(ds.test, config.per_class, config.seed),
                "PBC test": pbc_test}
    foreign = {**hl.labs.foreign_images(n=16, seed=0), **natural_photos()}
    command = "make benchmark-labs" + (" ARGS=--quick" if args.quick else "")
    results = {"date": time.strftime("%Y-%m-%d"), "command": command,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU, Python {platform.python_version()}",
               "config": config.to_dict(), "choices": []}
    kaggle_model = args.kaggle_model or saved_as("Kaggle only")
    for name, recipe in recipes(config).items():
        tr, va = (train + pbc_train, val + pbc_val) if name in TWO_LABS else (train, val)
        print(f"== trained on {name}", flush=True)
        given = {"Kaggle only": args.kaggle_model, "both labs": args.both_model}.get(name)
        further = kaggle_model if name == FURTHER else None
        results["choices"].append(run_choice(name, ds, tr, va, recipe, held_out, foreign, given, further,
                                             further_epochs=1 if args.quick else hl.recipe.FURTHER_EPOCHS))
    table = markdown(results)
    print(table)
    if not args.quick:
        publish(results)
        print(f"figures in {RESULTS}; tables in {', '.join(str(p) for p in DOCS)} and {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
