"""Generate exercises/ from solutions/ with nbgrader: `make exercises` (write) or `--check` (CI: fail if out of sync).

solutions/ holds nbgrader source notebooks: answers between `### BEGIN SOLUTION` and `### END SOLUTION`
in solution cells, CHECK cells as autograded tests with points, everything else read-only.
`nbgrader generate_assignment` turns them into the student versions (stubs in place of answers,
outputs cleared, checksums added) in a throw-away course folder; exercises/ is a byte-for-byte copy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "exercises"  # the assignment's name inside the throw-away course


class GenerateError(RuntimeError):
    """nbgrader refused the solutions; the message carries its log (which notebook, which cell)."""


def failure(log: str) -> str:
    """One paragraph from nbgrader's log: the notebook it was converting and the error it raised."""
    lines = log.splitlines()
    notebooks = [line.rsplit("/", 1)[-1] for line in lines if "Converting notebook" in line]
    errors = [line.strip() for line in lines if re.match(r"\s*[\w.]+(Error|Exception): ", line)
              and "NbGraderException" not in line]
    where = f" on solutions/{notebooks[-1]}" if notebooks else ""
    return f"nbgrader generate_assignment failed{where}: " + ("; ".join(dict.fromkeys(errors)) or log.strip()[-2000:])


def generate(solutions: Path = ROOT / "solutions") -> dict[str, str]:
    """{file name: exercise notebook text} for every solution notebook, as nbgrader releases it."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` to create its gradebook
    old_path = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory() as course:
        source = Path(course) / "source" / ASSIGNMENT
        source.mkdir(parents=True)
        for path in sorted(solutions.glob("*.ipynb")):
            shutil.copy(path, source / path.name)
        config = Config()
        config.CourseDirectory.root = course
        config.CourseDirectory.db_url = f"sqlite:///{course}/gradebook.db"
        os.environ["PATH"] = bin_dir + os.pathsep + old_path
        try:
            result = NbGraderAPI(config=config).generate_assignment(ASSIGNMENT, force=True)
        finally:
            os.environ["PATH"] = old_path
        release = Path(course) / "release" / ASSIGNMENT
        if not result["success"]:
            raise GenerateError(failure(result.get("log", "") + "\n" + result.get("error", "")))
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(release.glob("*.ipynb"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if exercises/ is out of sync")
    args = parser.parse_args(argv)
    exercises = ROOT / "exercises"
    try:
        wanted = generate()
    except GenerateError as exc:
        print(exc, file=sys.stderr)
        return 2
    existing = {p.name for p in exercises.glob("*.ipynb")}
    stale = sorted(existing - set(wanted))
    differ = sorted(n for n, text in wanted.items()
                    if not (exercises / n).exists() or (exercises / n).read_text(encoding="utf-8") != text)
    if args.check:
        if stale or differ:
            print(f"exercises/ is out of sync with solutions/: differ {differ}, no solution for {stale}. "
                  "Run `make exercises`.")
            return 1
        print(f"exercises/ matches solutions/ ({len(wanted)} notebooks)")
        return 0
    for name in differ:
        tmp = exercises / f".{name}.tmp"
        tmp.write_text(wanted[name], encoding="utf-8")
        os.replace(tmp, exercises / name)
    for name in stale:
        (exercises / name).unlink()
    print(f"wrote {len(differ)}, removed {len(stale)}, {len(wanted) - len(differ)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
