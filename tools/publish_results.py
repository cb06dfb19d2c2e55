"""Write the benchmark's figures into the docs: a short results table in README.md and the full
table in docs/model-card.md, each between its own markers, so that no figure is kept by hand.

    python tools/publish_results.py [--results benchmarks/results-2026-11-27-2.json]
                                    [--cv benchmarks/cross-validation.json]

Reads only the JSON files (`make benchmark ARGS=--readme` writes the first, the grouped
cross-validation the second); trains nothing and needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from hematolib.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MODEL_CARD = ROOT / "docs" / "model-card.md"
RESULTS = ROOT / "benchmarks" / "results-2026-11-27-2.json"
CROSS_VALIDATION = ROOT / "benchmarks" / "cross-validation.json"
MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
CARD_MARKERS = ("<!-- benchmark -->", "<!-- /benchmark -->")  # benchmarks/benchmark.py's full table

# Config fields that may differ between a benchmark run and a cross-validation of the same recipe.
NOT_THE_RECIPE = {"val_fraction", "per_class"}


def pct(value: float) -> str:
    return f"{value:.1%}"


def with_interval(result: dict) -> str:
    """`87.8% (74.0%-97.6%)`: an accuracy and its 95% interval."""
    return f"{pct(result['accuracy'])} ({pct(result['ci_low'])}-{pct(result['ci_high'])})"


def check_same_recipe(kit_config: dict, cv_config: dict) -> None:
    """Raise ValueError if the cross-validation trained another recipe than the benchmark's kit."""
    differ = sorted(k for k in kit_config.keys() & cv_config.keys()
                    if k not in NOT_THE_RECIPE and kit_config[k] != cv_config[k])
    if differ:
        raise ValueError("the cross-validation trained another recipe than the benchmark; they differ in "
                         + ", ".join(f"{k} ({cv_config[k]!r} against {kit_config[k]!r})" for k in differ)
                         + ". Cross-validate the benchmark's recipe, or publish a matching run.")


def results_table(results: dict, cross_validation: dict | None = None) -> str:
    """The README's table (markdown): the kit's recipe against the TensorFlow tutorial's, from a
    benchmark run's figures and, if given, the grouped cross-validation of the kit's recipe."""
    kit, tut = results["kit"], results["tutorial"]
    test = kit["test"]
    cv_label, cv = "cross-validated accuracy on TRAIN cells and its 95% interval", "not run"
    if cross_validation is not None:
        check_same_recipe(kit.get("config", {}), cross_validation["config"])
        pooled = cross_validation["pooled"]
        cv_label = (f"cross-validated accuracy ({cross_validation['k']} folds over {pooled['n_originals']} "
                    "TRAIN cells) and its 95% interval")
        cv = with_interval(pooled)
    kit_val = pct(kit["validation_accuracy"]) if kit.get("validation_accuracy") is not None else "-"
    rows = [
        (f"**TEST accuracy** ({test['n_images']:,} images of {test['n_originals']} cells) and its 95% interval",
         f"**{with_interval(test)}**", f"**{with_interval(tut['test'])}**"),
        (cv_label, cv, "not run"),
        ("what its own validation said", f"{kit_val} (cells held out)",
         f"{pct(tut['validation_accuracy'])} (images held out: leaky)"),
        ("training time on a 2-core CPU", f"{kit['train_seconds'] / 60:.1f} min",
         f"{tut['train_seconds'] / 60:.1f} min"),
    ]
    lines = ["| | kit recipe | TensorFlow-tutorial recipe |", "|---|---|---|"]
    return "\n".join(lines + [f"| {a} | {b} | {c} |" for a, b, c in rows]) + "\n"


def cited(path: Path) -> str:
    """How the docs name a figures file: relative to the project when it is inside it."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def readme_block(results_path: Path = RESULTS, cv_path: Path | None = CROSS_VALIDATION) -> str:
    """What stands between the README's markers: the table and the files it was made from."""
    cv = read_json(cv_path) if cv_path is not None else None
    sources = f"`{cited(results_path)}`" + (f" and `{cited(cv_path)}`" if cv_path is not None else "")
    return (results_table(read_json(results_path), cv)
            + f"\nMade by `python tools/publish_results.py` from {sources}.\n")


def replace_between(text: str, block: str, markers: tuple[str, str], name: str = "the document") -> str:
    """`text` with what stands between `markers` replaced by `block`; nothing else changes.

    Raises ValueError naming `name` and the marker missing (or out of order)."""
    start, end = text.find(markers[0]), text.find(markers[1])
    missing = [m for m, at in zip(markers, (start, end)) if at < 0]
    if missing:
        raise ValueError(f"{name} has no {' and no '.join(missing)} marker; add the pair "
                         f"{markers[0]} ... {markers[1]} where the table belongs.")
    if end < start or text.count(markers[0]) > 1 or text.count(markers[1]) > 1:
        raise ValueError(f"{name} must hold {markers[0]} once, then {markers[1]} once.")
    return text[:start + len(markers[0])] + "\n" + block.strip() + "\n" + text[end:]


def write_between(path: Path, block: str, markers: tuple[str, str]) -> None:
    """Replace what stands between `markers` in the file at `path`, atomically."""
    path = Path(path)
    write_text_atomic(path, replace_between(path.read_text(), block, markers, name=str(path)))


def write_readme_table(readme_path: Path = README, results_path: Path = RESULTS,
                       cv_path: Path | None = CROSS_VALIDATION) -> None:
    """Put the results table made from `results_path` (and `cv_path`) between the README's markers."""
    write_between(readme_path, readme_block(results_path, cv_path), MARKERS)


def model_card_block(results_path: Path = RESULTS) -> str:
    """The full benchmark table, as benchmarks/benchmark.py writes it, and its figures file."""
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "benchmarks" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)  # loaded here, not at import: benchmark.py may use this module
    return benchmark.markdown(read_json(results_path)) + f"\n\nRaw figures: `{cited(results_path)}`."


def write_model_card_table(card_path: Path = MODEL_CARD, results_path: Path = RESULTS) -> None:
    """Put the full benchmark table between the model card's markers."""
    write_between(card_path, model_card_block(results_path), CARD_MARKERS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="a full benchmark run's figures")
    parser.add_argument("--cv", type=Path, default=CROSS_VALIDATION, help="the kit recipe's cross-validation")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    parser.add_argument("--model-card", type=Path, default=MODEL_CARD, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for path in (args.results, args.cv):
        if not path.is_file():
            parser.error(f"{path} does not exist.")
    if read_json(args.results).get("command") != "make benchmark":
        parser.error(f"{args.results} is not from a full run (`make benchmark`); only full runs are published.")
    try:  # both texts first, so that an error leaves both files as they were
        texts = {args.readme: replace_between(args.readme.read_text(), readme_block(args.results, args.cv),
                                              MARKERS, name=str(args.readme)),
                 args.model_card: replace_between(args.model_card.read_text(), model_card_block(args.results),
                                                  CARD_MARKERS, name=str(args.model_card))}
    except ValueError as err:
        parser.error(str(err))
    for path, text in texts.items():
        write_text_atomic(path, text)
    print(f"{cited(args.readme)} and {cited(args.model_card)} updated from {cited(args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
