"""Point the kit at where it is published: `python tools/set_home.py URL REF`.

Writes the GitHub repository URL and the tag or commit REF into hematolib/home.py and into every
"Open in Colab" badge and Colab setup cell of notebooks/, exercises/, solutions/ and app/, so a
fork or a new release needs one command. Run it after tagging REF; tests/test_home.py checks that
everything agrees. Notebooks keep their cell ids and stay without outputs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from hematolib.files import write_text_atomic
from hematolib.home import FOLDERS, HomeError, check_ref, check_repository, colab_url

ROOT = Path(__file__).resolve().parent.parent

HOME_FILE = Path("hematolib") / "home.py"
_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/"
                    r"([^\s)]+\.ipynb)")
_VALUE = {name: re.compile(rf'^(\s*{name} = )"[^"\n]*"', re.M) for name in ("REPOSITORY", "REF")}


def set_values(source: str, repository: str, ref: str) -> str:
    """`source` with its `REPOSITORY = "..."` and `REF = "..."` lines set to the new values."""
    source = _VALUE["REPOSITORY"].sub(lambda m: f'{m.group(1)}"{repository}"', source)
    return _VALUE["REF"].sub(lambda m: f'{m.group(1)}"{ref}"', source)


def set_badges(source: str, repository: str, ref: str) -> str:
    """`source` with every Colab badge address pointing at `repository` and `ref`."""
    return _BADGE.sub(lambda m: colab_url(m.group(1), repository, ref), source)


def set_notebook(path: Path, repository: str, ref: str) -> bool:
    """Rewrite the badges and Colab setup cells of one notebook; True if it changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            new = set_badges(cell.source, repository, ref)
        elif cell.cell_type == "code" and "google.colab" in cell.source:
            new = set_values(cell.source, repository, ref)
        else:
            continue
        changed |= new != cell.source
        cell.source = new
    if changed:
        write_text_atomic(path, nbformat.writes(nb) + "\n")
    return changed


def set_home(repository: str, ref: str, root: Path = ROOT) -> list[Path]:
    """Write `repository` and `ref` everywhere the kit names its home under `root`; the changed files."""
    repository, ref = check_repository(repository), check_ref(ref)
    changed = []
    home = root / HOME_FILE
    text = home.read_text()
    if set_values(text, repository, ref) != text:
        write_text_atomic(home, set_values(text, repository, ref))
        changed.append(home)
    for folder in FOLDERS:
        for path in sorted((root / folder).glob("*.ipynb")):
            if set_notebook(path, repository, ref):
                changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the GitHub repository, e.g. https://github.com/OWNER/hematovision")
    parser.add_argument("ref", help="the tag or commit to pin, e.g. v0.1.0 (not a branch)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the kit's folder (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        changed = set_home(args.url, args.ref, args.root)
    except HomeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(args.root)}")
    print(f"{len(changed)} file(s) updated; the kit's home is {check_repository(args.url)} at {args.ref}")
    generator = args.root / "tools" / "make_exercises.py"
    if changed and generator.exists():  # exercises/ is nbgrader's output: made again from solutions/
        import subprocess

        return subprocess.run([sys.executable, str(generator)], cwd=args.root).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
