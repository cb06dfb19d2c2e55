"""The originals table: which photographed cell each image of a dataset shows (`originals.csv`)."""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path
from typing import Iterable

from .errors import DatasetLayoutError

ORIGINALS_FILE = "originals.csv"  # in a dataset's images folder: which cell each image shows
_KNOWN_ORIGINALS = Path(__file__).with_name(ORIGINALS_FILE)  # the Kaggle dataset's, shipped
_ORIGINALS_COLUMNS = ("path", "bytes", "original")


def read_originals(path: str | Path) -> dict[str, tuple[int, str]]:
    """An originals table: `<split>/<class>/<file name>` -> (file size in bytes, original cell id).

    The file is CSV with columns path, bytes, original (lines starting with # are comments).
    """
    path = Path(path)
    table: dict[str, tuple[int, str]] = {}
    with open(path, newline="") as f:
        rows = csv.reader(line for line in f if not line.startswith("#"))
        header = next(rows, None)
        if header != list(_ORIGINALS_COLUMNS):
            raise DatasetLayoutError(f"{path}: expected the columns path,bytes,original; found {header}.")
        for row in rows:
            if len(row) != 3 or not row[1].isdigit():
                raise DatasetLayoutError(f"{path}: a row should read <split>/<class>/<file>,<bytes>,<id>; "
                                         f"found {','.join(row)}.")
            table[row[0]] = (int(row[1]), row[2])
    return table


def write_originals(path: str | Path, rows: Iterable[tuple[str, int, str]], comment: str = "") -> None:
    """Write an originals table (read_originals' format) atomically: rows of
    (`<split>/<class>/<file name>`, file size in bytes, original cell id)."""
    from .files import write_text_atomic

    out = io.StringIO()
    out.write("".join(f"# {line}\n" for line in comment.splitlines()))
    csv.writer(out, lineterminator="\n").writerows([_ORIGINALS_COLUMNS, *rows])
    write_text_atomic(path, out.getvalue())


@functools.lru_cache(maxsize=1)
def known_originals() -> dict[str, tuple[int, str]]:
    """The shipped table for Kaggle's blood-cells images (see tools/match_originals.py)."""
    return read_originals(_KNOWN_ORIGINALS)


def original_of(path: Path, split: str, class_name: str, table: dict[str, tuple[int, str]]) -> str:
    """The original-cell id of one image: from the table when it lists this very file (same name
    and size), else the file is taken as a cell of its own (`<split>/<class>/<stem>`).

    File names do not say it: in Kaggle's `_<i>_<rand>.jpeg` the `<i>` is the image's position
    in a shuffled pass of the augmentation, and the images named `_0_...` show many cells.
    """
    entry = table.get(f"{split}/{class_name}/{path.name}")
    if entry is not None and entry[0] == path.stat().st_size:
        return entry[1]
    return f"{split}/{class_name}/{path.stem}"
