"""Run the numbered notebooks in order with papermill: `python -m hematolib course` (`make course`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from .config import PROJECT_DIR, models_dir

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


def run(out_dir: Path = PROJECT_DIR / "build" / "course", parameters: dict | None = None,
        only: list[str] | None = None, progress: TextIO | None = sys.stdout) -> list[tuple[str, float]]:
    """Execute every notebook (or those whose name starts with one of `only`) into `out_dir`.

    `parameters` are passed to each notebook that has them in its parameters cell. With
    `progress`, each notebook's name and what it prints (its training stages, epochs and the time
    left) go there as they happen. Returns (notebook name, seconds) per notebook.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = [nb for nb in notebooks() if not only or any(nb.name.startswith(p) for p in only)]
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
                         f"{simple['n_images']} original cells correct")
        lines.append(f"Model: {results['model']}")
        if results.get("synthetic_data"):
            lines.append("WARNING: trained and tested on SYNTHETIC data; get the real dataset with "
                         "`python -m hematolib download`.")
    return "\n".join(lines)
