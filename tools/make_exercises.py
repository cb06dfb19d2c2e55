"""Generate exercises/ from solutions/: `make exercises` (write) or `--check` (CI: fail if out of sync).

In every code cell, each block from `### BEGIN SOLUTION` to `### END SOLUTION` (the nbgrader
markers) becomes `# YOUR CODE HERE` + `raise NotImplementedError()` at the block's indentation.
Outputs and execution counts are stripped; everything else is kept as it is.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_BLOCK = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*(\n|$)",
                    re.M | re.S)


class MarkerError(ValueError):
    """Unbalanced or nested solution markers; the message names the notebook and cell."""


def strip_solution(source: str, where: str = "cell") -> str:
    """The exercise version of one cell's source."""
    if source.count(BEGIN) != source.count(END):
        raise MarkerError(f"{where}: {source.count(BEGIN)} BEGIN but {source.count(END)} END markers")
    out = _BLOCK.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()"
                     + m.group(2), source)
    if BEGIN in out or END in out:
        raise MarkerError(f"{where}: nested or misplaced solution markers")
    return out


def exercise_from(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The exercise notebook made from a solution notebook."""
    nb = nbformat.from_dict(solution)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.source = strip_solution(cell.source, f"{name} cell {i}")
            cell.outputs = []
            cell.execution_count = None
    return nb


def generate(solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises") -> dict[str, str]:
    """{file name: exercise notebook text} for every solution notebook."""
    out = {}
    for path in sorted(solutions.glob("*.ipynb")):
        nb = exercise_from(nbformat.read(path, as_version=4), path.name)
        out[path.name] = nbformat.writes(nb) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if exercises/ is out of sync")
    args = parser.parse_args(argv)
    exercises = ROOT / "exercises"
    wanted = generate()
    existing = {p.name for p in exercises.glob("*.ipynb")}
    stale = sorted(existing - set(wanted))
    differ = sorted(n for n, text in wanted.items()
                    if not (exercises / n).exists() or (exercises / n).read_text() != text)
    if args.check:
        if stale or differ:
            print(f"exercises/ is out of sync with solutions/: differ {differ}, no solution for {stale}. "
                  "Run `make exercises`.")
            return 1
        print(f"exercises/ matches solutions/ ({len(wanted)} notebooks)")
        return 0
    for name in differ:
        (exercises / name).write_text(wanted[name])
    for name in stale:
        (exercises / name).unlink()
    print(f"wrote {len(differ)}, removed {len(stale)}, {len(wanted) - len(differ)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
