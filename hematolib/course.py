"""Run the numbered notebooks in order with papermill: `python -m hematolib course` (`make course`)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .config import PROJECT_DIR, env_path, models_dir, two_labs_model_path

if TYPE_CHECKING:
    from .download import Source

NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
RESULTS_FILE = "evaluation.json"  # written by 05_evaluation into models/


def notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The course notebooks, in order: notebooks/NN_*.ipynb."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


class _Indented:
    """A text stream that writes each line of what it is given indented, to `out`."""

    def __init__(self, out: TextIO, indent: str = "    "):
        self.out, self.indent, self.at_line_start = out, indent, True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            self.out.write((self.indent if self.at_line_start else "") + piece)
            self.at_line_start = piece.endswith("\n")
        self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def ensure_data(target: Path | None = None, source: Source | None = None,
                progress: TextIO | None = sys.stdout) -> Path | None:
    """The real dataset the notebooks will find, downloaded into `target` (default data/blood-cells)
    when there is none; None when that download failed and the notebooks will use the synthetic set.

    `HEMATO_DATA`, when set, is used as it is (a folder that does not exist is an error). `source` is
    where to download from (default: the pinned copy of the Kaggle dataset, or the mirror that
    HEMATO_DATA_URL names).
    """
    from . import download
    from .data import find_data_dir

    out = progress or sys.stderr
    if env_path("HEMATO_DATA") is not None:
        return find_data_dir()
    target = Path(target) if target is not None else download.default_target()
    if target.exists():
        return target
    source = source or download.pinned_source()
    print(f"No dataset found (HEMATO_DATA is not set and {target} does not exist): downloading the "
          f"Kaggle blood-cells dataset from {source.url} and checking every file.", file=out, flush=True)
    try:
        return download.download_dataset(target, source, progress=bool(progress))
    except download.DownloadError as exc:
        print(textwrap.fill(
            f"COULD NOT DOWNLOAD THE DATASET: {exc} The course now runs on the built-in SYNTHETIC dataset "
            "of drawn cells: the code runs, but its results say nothing about blood cells. For the real "
            "course, run `python -m hematolib download` when you are online (it puts the data in "
            f"{target}), or point HEMATO_DATA at a copy you have, then run `make course` again.",
            width=100, break_long_words=False, break_on_hyphens=False), file=out, flush=True)
        return None


SECOND_LAB_NOTEBOOKS = ("06_domain_shift.ipynb",)  # they need the PBC images (hl.pbc)


def ensure_second_lab(target: Path | None = None, snapshot=None, progress: TextIO | None = sys.stdout) -> Path | None:
    """The second lab's images, downloaded into `target` (default data/pbc) when there are none;
    None when that failed: the notebooks that need them are then skipped, and the course says so."""
    from . import download, pbc
    from .data import DataNotFoundError

    out = progress or sys.stderr
    try:
        return pbc.find_pbc_dir()
    except DataNotFoundError:
        pass
    if env_path("HEMATO_PBC") is not None:  # named but missing: find_pbc_dir's message says so
        print(f"HEMATO_PBC names no folder: skipping {', '.join(SECOND_LAB_NOTEBOOKS)}.", file=out, flush=True)
        return None
    print("No second-lab images found: downloading the PBC dataset's four classes and checking every file.",
          file=out, flush=True)
    try:
        return pbc.download_pbc(target, snapshot=snapshot, progress=bool(progress))
    except download.DownloadError as exc:
        print(textwrap.fill(
            f"COULD NOT DOWNLOAD THE SECOND LAB'S IMAGES: {exc} The course skips {', '.join(SECOND_LAB_NOTEBOOKS)}. "
            "Run `python -m hematolib download --dataset pbc` when you are online, or point HEMATO_PBC at a "
            "copy, then run it with `make course ARGS=\"--only 06\"`.",
            width=100, break_long_words=False, break_on_hyphens=False), file=out, flush=True)
        return None


def run_notebooks(out_dir: Path = PROJECT_DIR / "build" / "course", parameters: dict | None = None,
                  only: list[str] | None = None, progress: TextIO | None = sys.stdout) -> list[tuple[str, float]]:
    """Execute every notebook (or those whose name starts with one of `only`) into `out_dir`.

    First the dataset: when there is none, it is downloaded (`ensure_data`). `parameters` are
    passed to each notebook that has them in its parameters cell. With `progress`, each notebook's
    name and what it prints (its training stages, epochs and the time left) go there as they
    happen. Returns (notebook name, seconds) per notebook.
    """
    import papermill as pm

    ensure_data(progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [nb for nb in notebooks() if not only or any(nb.name.startswith(p) for p in only)]
    if any(nb.name in SECOND_LAB_NOTEBOOKS for nb in chosen) and ensure_second_lab(progress=progress) is None:
        chosen = [nb for nb in chosen if nb.name not in SECOND_LAB_NOTEBOOKS]
    timings = []
    for k, nb in enumerate(chosen, 1):
        declared = set(pm.inspect_notebook(str(nb)))
        params = {key: v for key, v in (parameters or {}).items() if key in declared}
        if progress:
            print(f"== [{k}/{len(chosen)}] {nb.name} {params or ''}", file=progress, flush=True)
        start = time.perf_counter()
        pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, cwd=str(nb.parent),
                            progress_bar=False, kernel_name="python3",
                            stdout_file=_Indented(progress) if progress else None)
        timings.append((nb.name, time.perf_counter() - start))
        if progress:
            print(f"   {nb.name} took {timings[-1][1] / 60:.1f} min", file=progress, flush=True)
    return timings


def summary(timings: list[tuple[str, float]], models: Path | None = None) -> str:
    """The closing summary: time per notebook, TEST accuracy and where the model is.

    models: the folder where 05_evaluation wrote its results (default: models_dir()).
    """
    lines = [f"{name:<32}{seconds / 60:6.1f} min" for name, seconds in timings]
    lines.append(f"{'total':<32}{sum(s for _, s in timings) / 60:6.1f} min")
    results_path = (models or models_dir()) / RESULTS_FILE
    if results_path.exists():
        results = json.loads(results_path.read_text())
        test = results["TEST"]
        lines.append(f"TEST accuracy: {test['accuracy']:.1%} (95% CI {test['ci_low']:.1%}-"
                     f"{test['ci_high']:.1%} over {test['n_originals']} original cells)")
        if "TEST_SIMPLE" in results:
            simple = results["TEST_SIMPLE"]
            lines.append(f"TEST_SIMPLE: {round(simple['accuracy'] * simple['n_images'])} of "
                         f"{simple['n_images']} images correct")
        lines.append(f"Model: {results['model']}")
        if results.get("synthetic_data"):
            lines.append("WARNING: trained and tested on SYNTHETIC data; get the real dataset with "
                         "`python -m hematolib download`.")
    two_labs = (models or models_dir()) / two_labs_model_path().name
    if two_labs.exists():
        lines.append(f"Two-lab model, which the widget, predict and evaluate use: {two_labs}")
    return "\n".join(lines)
