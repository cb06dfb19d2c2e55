"""Command line: `python -m hematolib explore|train|evaluate|predict|download|synthesize|grade`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .config import (BOTH_LABS_IMAGE_SIZE, PROJECT_DIR, Config, default_model_path, kaggle_model_path,
                     two_labs_model_path)


def _dataset(args):
    from . import data

    return data.open_dataset(args.data)


def cmd_explore(args) -> int:
    """Print the dataset summary and write its plots."""
    from . import data, plots

    ds = _dataset(args)
    print(f"Dataset: {ds.images_dir}" + ("  [SYNTHETIC]" if ds.synthetic else ""))
    print(data.summary(ds))
    for path, why in ds.problems:
        print(f"skipped {path}: {why}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plots.class_counts(ds.counts()).savefig(out / "class_counts.png", dpi=100)
    plots.sample_grid(ds.train, per_class=4, seed=0).savefig(out / "samples.png", dpi=100)
    print(f"Plots written to {out}/")
    return 0


def cmd_train(args) -> int:
    """Train the default recipe and save the model: on every TRAIN cell, unless --holdout; on one lab,
    with the colour channels jittered while fine-tuning (`recipe.one_lab_config`)."""
    from .data import DataNotFoundError
    from .pbc import SPLIT, find_pbc_dir, open_pbc
    from .recipe import both_labs_config, one_lab_config, refit_config, run
    from .train import set_seed

    second_lab = None
    if args.labs == "auto":
        try:
            find_pbc_dir()
            args.labs = "both"
        except DataNotFoundError:
            args.labs = "kaggle"
            print("No second lab's images (HEMATO_PBC, data/pbc): training on the Kaggle lab alone. The kit's "
                  "default model trains on both labs: `python -m hematolib download --dataset pbc` first.")
    if args.labs == "both":
        second_lab = open_pbc().splits[SPLIT]
    image_size = Config().image_size if args.image_size is None else args.image_size
    config = Config(alpha=args.alpha, image_size=image_size, crop=not args.no_crop, flips=not args.no_flips,
                    per_class=args.per_class, head_epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs,
                    seed=args.seed)
    if second_lab and args.image_size is None:
        config = both_labs_config(config)
    if not second_lab:
        config = one_lab_config(config)
    if not args.holdout:
        config = refit_config(config)
    set_seed(config.seed)

    out = Path(args.out) if args.out else two_labs_model_path() if second_lab else kaggle_model_path()
    result = run(_dataset(args), config, out=out, verbose=args.verbose, second_lab=second_lab)
    for report in result.reports.values():
        print(report.summary())
    print(f"Model saved to {result.path}")
    return 0


def cmd_evaluate(args) -> int:
    """Evaluate a saved model on TEST and TEST_SIMPLE."""
    from . import data, inference, model_file

    path = args.model or default_model_path()
    model, info = model_file.load(path)
    ds = _dataset(args)
    reports = {"TEST": inference.evaluate_records(
        model, data.cap_per_class(ds.test, args.per_class, 0), "TEST")[0]}
    if ds.test_simple:
        reports["TEST_SIMPLE"] = inference.evaluate_records(model, ds.test_simple, "TEST_SIMPLE")[0]
    if args.json:
        print(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=2))
    else:
        print(f"Model: {path}")
        for credit in info.credits:
            print(f"Trained on: {credit}")
        for r in reports.values():
            print(r.summary())
            for class_name, m in r.per_class.items():
                print(f"  {class_name:<11} precision {m['precision']:.2f}  recall {m['recall']:.2f}"
                      f"  f1 {m['f1']:.2f}  n={m['support']}")
    return 0


def cmd_predict(args) -> int:
    """Classify image files; a bad file is reported and the rest still run (exit code 1)."""
    from .images import ImageDecodeError
    from .inference import Predictor

    predictor = Predictor.from_file(args.model)
    for credit in getattr(predictor.info, "credits", []):  # CC BY: say whose images trained the model
        print(f"credit: {credit}", file=sys.stderr)
    failed = 0
    rows = []
    for path in args.images:
        try:
            p = predictor.predict_file(path)
        except ImageDecodeError as exc:
            failed += 1
            rows.append({"image": path, "error": str(exc)})
            if not args.json:
                print(f"ERROR {exc}", file=sys.stderr)
            continue
        rows.append(p.to_dict())
        if not args.json:
            probs = "  ".join(f"{c[:3]} {v:.2f}" for c, v in p.probabilities.items())
            flag = "  (uncertain)" if p.uncertain else ""
            print(f"{path}: {p.class_name} {p.confidence:.1%}{flag}   [{probs}]")
            for note in p.notes:
                print(f"  note: {note}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 1 if failed else 0


def cmd_download(args) -> int:
    """Download the Kaggle dataset into data/blood-cells, or PBC into data/pbc (or --target)."""
    from . import download

    if args.dataset == "pbc":
        from . import pbc

        if args.source == "kaggle":
            raise download.DownloadError("--source kaggle is for the Kaggle dataset; PBC comes from its "
                                         "pinned GitHub snapshot: drop --source.")
        snapshot = replace(pbc.pinned_snapshot(), url=args.url) if args.url else None
        target = pbc.download_pbc(args.target, snapshot=snapshot, force=args.force)
        print(f"PBC ready in {target}\n{pbc.CREDIT}")
        return 0
    if args.source == "kaggle":
        if args.url:
            raise download.DownloadError("--url names a mirror of the pinned archive; --source kaggle "
                                         "fetches through kagglehub: use one of them.")
        target = download.download_from_kaggle(args.target)
    else:
        source = replace(download.pinned_source(), url=args.url) if args.url else None
        target = download.download_dataset(args.target, source, force=args.force)
    print(f"Dataset ready in {target}")
    return 0


def cmd_synthesize(args) -> int:
    """Write the synthetic dataset."""
    from .synthetic import make_synthetic_dataset

    print(f"Synthetic dataset in {make_synthetic_dataset(args.target)}")
    return 0


def _json_or_text(value: str):
    """`40` -> 40, `null` -> None, `0.35` -> 0.35; anything else stays a string (a path, say)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def cmd_course(args) -> int:
    """Run the notebooks in order and print the results summary."""
    import os

    from . import course

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the notebooks' kernels: TensorFlow's C++ notes stay out
    params = {k: _json_or_text(v) for k, v in args.param}
    timings = course.run_notebooks(Path(args.out), params, only=args.only)
    print(course.summary(timings))
    return 0


def cmd_grade(args) -> int:
    """Grade every student's notebooks; print the table, write the CSV."""
    import os

    from . import gradebook

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernels: TensorFlow's C++ notes stay out
    try:
        results, notes = gradebook.grade_folder(args.submissions, args.release, args.timeout, args.exercises,
                                                progress=lambda line: print(line, file=sys.stderr, flush=True))
    except gradebook.GradeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(gradebook.table(results), end="")
    print(f"Grades written to {gradebook.write_csv(results, args.out)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hematolib",
                                     description="HematoVision: white blood cell classification.")
    sub = parser.add_subparsers(dest="command", required=True)
    data_help = "dataset folder (default: HEMATO_DATA, then data/blood-cells, then synthetic)"

    p = sub.add_parser("explore", help="dataset summary and plots")
    p.add_argument("--data", help=data_help)
    p.add_argument("--out", default=str(PROJECT_DIR / "build" / "explore"))
    p.set_defaults(func=cmd_explore)

    defaults = Config()
    p = sub.add_parser("train", help="train and save a model")
    p.add_argument("--data", help=data_help)
    p.add_argument("--alpha", type=float, default=defaults.alpha, choices=(0.35, 1.0))
    p.add_argument("--image-size", type=int, help=f"side of the square the network sees (default "
                   f"{defaults.image_size} on the Kaggle lab alone, {BOTH_LABS_IMAGE_SIZE} on both labs)")
    p.add_argument("--no-crop", action="store_true", help="feed whole images, not the crop around the cell")
    p.add_argument("--no-flips", action="store_true",
                   help="predict from the image as it is, not the mean over four flipped views")
    p.add_argument("--holdout", action="store_true",
                   help=f"hold {defaults.val_fraction * 100:.0f}%% of the TRAIN cells out and report validation "
                        "on them (default: train on every cell with the same recipe)")
    p.add_argument("--labs", choices=("auto", "kaggle", "both"), default="auto",
                   help="train on the Kaggle lab's cells, or on those and the second lab's (PBC: HEMATO_PBC "
                        "or data/pbc, from `download --dataset pbc`); auto, the default: both when the second "
                        "lab's images are there (docs/second-lab.md). On the Kaggle lab alone, each colour channel is "
                        "jittered while fine-tuning, so the model leans less on that lab's stain")
    p.add_argument("--per-class", type=int, default=None, help="cap on images per class (quick runs)")
    p.add_argument("--epochs", type=int, default=defaults.head_epochs, help="head epochs")
    p.add_argument("--fine-tune-epochs", type=int, default=defaults.fine_tune_epochs)
    p.add_argument("--seed", type=int, default=defaults.seed)
    out_help = (f"where to save the model (default {two_labs_model_path()} when it trains on both labs, "
                f"else {kaggle_model_path()})")
    p.add_argument("--out", help=out_help.replace("%", "%%"))  # argparse formats help with %
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="TEST and TEST_SIMPLE metrics of a saved model")
    p.add_argument("--model", help="the model file (default: the two-lab model when there is one, else the "
                                   "Kaggle lab's)")
    p.add_argument("--data", help=data_help)
    p.add_argument("--per-class", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="class and probabilities of image files")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", help="the model file (default: the two-lab model when there is one, else the "
                                   "Kaggle lab's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("download", help="download the dataset (data/blood-cells) or PBC (data/pbc)")
    p.add_argument("--dataset", choices=("kaggle", "pbc"), default="kaggle",
                   help="kaggle: the blood-cells set the course trains on; pbc: a second lab's cells "
                        "(Acevedo et al. 2020, CC BY 4.0)")
    p.add_argument("--target", default=None)
    p.add_argument("--source", choices=("github", "kaggle"), default="github")
    p.add_argument("--force", action="store_true")
    p.add_argument("--url", default=None,
                   help="a mirror of the pinned archive (a classroom server, say; default: HEMATO_DATA_URL, or "
                        "HEMATO_PBC_URL for pbc, then the pinned source): every file is checked the same way")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("course", help="run the numbered notebooks in order (make course)")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="notebook parameter, e.g. -p PER_CLASS 40 (JSON values)")
    p.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 03")
    p.add_argument("--out", default=str(PROJECT_DIR / "build" / "course"))
    p.set_defaults(func=cmd_course)

    p = sub.add_parser("synthesize", help="write the built-in synthetic dataset")
    p.add_argument("--target", default=str(PROJECT_DIR / "data" / "synthetic"))
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("grade", help="run and score a folder of student notebooks (make grade)")
    p.add_argument("submissions", help="one subfolder per student (as nbgrader lays them out), "
                                       "or files named STUDENT_exNN_name.ipynb")
    p.add_argument("--release", default=str(PROJECT_DIR / "exercises"),
                   help="the released exercises the checks come from (default: exercises/)")
    p.add_argument("--exercises", nargs="*", help="exercises to grade, e.g. ex01 ex03 (default: every one "
                                                  "a student submitted; a missing notebook scores 0)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per notebook")
    p.add_argument("--out", default=str(PROJECT_DIR / "build" / "grades.csv"), help="the CSV to write")
    p.set_defaults(func=cmd_grade)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; expected errors print one clear line instead of a traceback."""
    from .data import DataNotFoundError, DatasetLayoutError
    from .download import DownloadError
    from .model import WeightsNotFoundError
    from .model_file import ModelFileError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataNotFoundError, DatasetLayoutError, DownloadError, ModelFileError,
            WeightsNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
