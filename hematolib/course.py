"""Run the numbered notebooks in order with papermill: `python -m hematolib course` (`make course`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from unittest import mock

from .config import PROJECT_DIR, models_dir
from .train import PROGRESS_VARIABLE

NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
RESULTS_FILE = "evaluation.json"  # written by 05_evaluation into models/


def notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The course notebooks, in order: notebooks/NN_*.ipynb."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def run(out_dir: Path = PROJECT_DIR / "build" / "course", parameters: dict | None = None,
        only: list[str] | None = None, progress: bool = True) -> list[tuple[str, float]]:
    """Execute every notebook (or those whose name starts with one of `only`) into `out_dir`.

    `parameters` are passed to each notebook that has them in its parameters cell.
    Returns (notebook name, seconds) per notebook.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    timings = []
    # The kernels inherit it: Keras prints a line per epoch, not a bar whose every redraw the saved copy keeps.
    with mock.patch.dict(os.environ, {PROGRESS_VARIABLE: "lines"}):
        for nb in notebooks():
            if only and not any(nb.name.startswith(prefix) for prefix in only):
                continue
            timings.append((nb.name, _execute(pm, nb, out_dir, parameters or {}, progress)))
    return timings


def _execute(pm, nb: Path, out_dir: Path, parameters: dict, progress: bool) -> float:
    """Execute one notebook into `out_dir` with the `parameters` it declares; return its seconds."""
    declared = set(pm.inspect_notebook(str(nb)))
    params = {k: v for k, v in parameters.items() if k in declared}
    if progress:
        print(f"== {nb.name} {params or ''}", flush=True)
    start = time.perf_counter()
    pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=params, cwd=str(nb.parent),
                        progress_bar=progress, kernel_name="python3")
    return time.perf_counter() - start


def summary(timings: list[tuple[str, float]], models: Path | None = None) -> str:
    """The closing summary: time per notebook, TEST accuracy and where the model is.

    models: the folder where 05_evaluation wrote its results (default: models_dir()).
    """
    lines = [f"{name:<32}{seconds / 60:6.1f} min" for name, seconds in timings]
    results_path = (models or models_dir()) / RESULTS_FILE
    if results_path.exists():
        results = json.loads(results_path.read_text())
        test = results["TEST"]
        lines.append(f"TEST accuracy: {test['accuracy']:.1%} (95% CI {test['ci_low']:.1%}-"
                     f"{test['ci_high']:.1%} over {test['n_originals']} original cells)")
        if "TEST_SIMPLE" in results:
            simple = results["TEST_SIMPLE"]
            lines.append(f"TEST_SIMPLE: {round(simple['accuracy'] * simple['n_images'])} of "
                         f"{simple['n_images']} original cells correct")
        lines.append(f"Model: {results['model']}")
        if results.get("synthetic_data"):
            lines.append("WARNING: trained and tested on SYNTHETIC data; get the real dataset with "
                         "`python -m hematolib download`.")
    return "\n".join(lines)
