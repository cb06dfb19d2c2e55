"""PBC (Acevedo et al. 2020), a second lab's white cells: download it checked, find it, open it."""

from __future__ import annotations

import os
import shutil
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from .config import CLASS_NAMES, PROJECT_DIR, env_path
from .data import DataNotFoundError, Dataset, DatasetLayoutError, ImageRecord, _list_split
from .download import DownloadError, check_free_space, checks_out, extract_safely, fetch, swap_into_place, work_folder
from .files import sha256_file
from .images import full_check, quick_check

COMMIT = "c3c0681e2937577a26532c4c63411557fcd0fb29"
SPLIT = "PBC"  # the split name of every PBC record
UPSTREAM_CLASSES = {"eosinophil": "EOSINOPHIL", "lymphocyte": "LYMPHOCYTE", "monocyte": "MONOCYTE",
                    "neutrophil": "NEUTROPHIL"}  # folder under the snapshot's wbc/ -> the kit's class
MANIFEST_FILE = "MANIFEST.sha256"  # in a PBC folder: "<sha256>  <CLASS>/<file name>" per image

CREDIT = ("PBC images: Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J (2020). "
          "A dataset of microscopic peripheral blood cell images for development of automatic "
          "recognition systems. Data in Brief 30:105474. Mendeley Data V1, doi:10.17632/snkd93bnjr.1. "
          "Licence CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).")
HOW_TO_GET_PBC = ("Get it with `python -m hematolib download --dataset pbc` (it goes to data/pbc), "
                  "or point HEMATO_PBC at a copy you have.")


@dataclass(frozen=True)
class Snapshot:
    """A pinned archive of the PBC repository and the manifest its four-class images must match."""

    url: str
    folder: str  # the archive's top folder
    manifest: Path  # lines "<sha256>  <bytes>  wbc/<class>/<file name>"
    origin: str  # what the written SOURCE.md names as the source


PINNED = Snapshot(url=f"https://github.com/kylewang1999/PBC_dataset/archive/{COMMIT}.zip",
                  folder=f"PBC_dataset-{COMMIT}", manifest=Path(__file__).with_name("pbc-wbc.sha256"),
                  origin=f"github.com/kylewang1999/PBC_dataset at commit {COMMIT}")


URL_ENV = "HEMATO_PBC_URL"  # a mirror of the pinned snapshot's archive (a classroom server, say)


def pinned_snapshot() -> Snapshot:
    """The pinned snapshot, fetched from the mirror named by HEMATO_PBC_URL when set: every image
    is checked against the same manifest."""
    url = os.environ.get(URL_ENV)
    return replace(PINNED, url=url) if url else PINNED


def read_manifest(path: str | Path) -> dict[str, tuple[str, int]]:
    """A snapshot manifest: `wbc/<class>/<file name>` -> (sha256, bytes)."""
    path = Path(path)
    rows: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit() \
                or PurePosixPath(parts[2]).parent.parent.as_posix() != "wbc":
            raise ValueError(f"{path}, line {number}: expected `<sha256>  <bytes>  wbc/<class>/<file>`, "
                             f"found {line!r}.")
        rows[parts[2]] = (parts[0], int(parts[1]))
    return rows


def select_cells(manifest: dict[str, tuple[str, int]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """One image per cell: (`<CLASS>/<file name>` -> snapshot path, [(snapshot path, why left out)]).

    Hidden files are not cells. Byte-identical files are one image: within a class the first name
    is kept; across classes the label is in doubt, so every copy is left out.
    """
    dropped: list[tuple[str, str]] = []
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path, (sha, _) in sorted(manifest.items()):
        if PurePosixPath(path).name.startswith("."):
            dropped.append((path, "a hidden file, not a cell image"))
        else:
            by_hash[sha].append(path)
    kept: dict[str, str] = {}
    for paths in by_hash.values():
        classes = {PurePosixPath(p).parent.name for p in paths}
        if len(classes) > 1:
            dropped += [(p, f"the same bytes as {', '.join(q for q in paths if q != p)}, a different class: "
                            "its label is in doubt") for p in paths]
            continue
        first = min(paths, key=lambda p: PurePosixPath(p).name)
        dropped += [(p, f"the same bytes as {first} (kept)") for p in paths if p != first]
        kept[f"{UPSTREAM_CLASSES[PurePosixPath(first).parent.name]}/{PurePosixPath(first).name}"] = first
    return dict(sorted(kept.items())), sorted(dropped)


def verify_files(root: Path, expected: dict[str, tuple[str, int]], what: str, hint: str = "") -> None:
    """Check that the folders holding `expected`'s files (relative paths) hold exactly them, with
    the listed sha256 and size; raise DownloadError naming every file that is missing, extra or wrong."""
    problems = []
    for rel, (sha, size) in sorted(expected.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != size:
            problems.append(f"{rel}: {path.stat().st_size:,} bytes, the manifest says {size:,}")
        elif sha256_file(path) != sha:
            problems.append(f"{rel}: its sha256 differs from the manifest")
    folders = {PurePosixPath(rel).parent for rel in expected}
    for folder in sorted(folders):
        for path in sorted((root / folder).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_dir() and rel not in expected:
                problems.append(f"{rel}: not in the manifest")
    if problems:
        raise DownloadError(f"{what} does not match the manifest ({len(problems)} problem(s)): "
                            + "; ".join(problems[:8]) + ("; ..." if len(problems) > 8 else "")
                            + (f". {hint}" if hint else "."))


def default_target() -> Path:
    return PROJECT_DIR / "data" / "pbc"


def download_pbc(target: str | Path | None = None, snapshot: Snapshot | None = None, force: bool = False,
                 progress: bool = True, timeout: float = 60) -> Path:
    """Fetch the pinned PBC snapshot, check every four-class image, and lay out one image per cell
    as `target/<CLASS>/*.jpg` (default data/pbc) with MANIFEST.sha256 and the credit; return it.

    Works in a temporary folder next to `target` and renames into place only when every file
    matched, so a failed or bad download never replaces a good copy.
    """
    snapshot = snapshot or pinned_snapshot()
    target = Path(target) if target is not None else default_target()
    manifest = read_manifest(snapshot.manifest)
    cells, dropped = select_cells(manifest)
    expected = {cell: manifest[path] for cell, path in cells.items()}
    if not force and target.is_dir() and checks_out(lambda: verify_files(target, expected, str(target))):
        return target
    work = work_folder(target)
    try:
        needed = sum(size for _, size in manifest.values())
        archive = fetch(snapshot.url, work / "archive", label="PBC", unpacked_bytes=needed,
                        offline_hint="Offline, point HEMATO_PBC at a copy of the PBC images.",
                        progress=progress, timeout=timeout)
        check_free_space(work, needed)
        wanted = tuple(f"{snapshot.folder}/wbc/{name}/" for name in UPSTREAM_CLASSES)
        unpacked = work / "unpacked"
        extract_safely(archive, unpacked, keep=lambda name: name.startswith(wanted) and not name.endswith("/"))
        archive.unlink()
        found = unpacked / snapshot.folder
        if not (found / "wbc").is_dir():
            raise DownloadError(f"{snapshot.url}: the archive has no folder {snapshot.folder}/wbc/; "
                                "is the URL right?")
        verify_files(found, manifest, f"The PBC download from {snapshot.url}",
                     hint="Try again; if it fails the same way, the snapshot is not the one the kit "
                          f"pinned ({snapshot.manifest.name}): please report it.")
        staged = work / "staged"
        for class_name in CLASS_NAMES:
            (staged / class_name).mkdir(parents=True)
        for cell, path in cells.items():
            (found / path).rename(staged / cell)
        (staged / MANIFEST_FILE).write_text("".join(f"{sha}  {cell}\n" for cell, (sha, _) in expected.items()))
        (staged / "SOURCE.md").write_text(source_note(snapshot, cells, dropped))
        swap_into_place(staged, target)
    except DownloadError as exc:
        if not target.exists():
            raise
        raise type(exc)(f"{str(exc).strip().rstrip('.')}. {target} was left as it was.") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def source_note(snapshot: Snapshot, cells: dict[str, str], dropped: list[tuple[str, str]]) -> str:
    """The SOURCE.md written beside the images: credit, licence, origin and what was left out."""
    counts = ", ".join(f"{c} {sum(cell.startswith(c + '/') for cell in cells):,}" for c in CLASS_NAMES)
    changes = "The class folders carry the kit's class names"
    if dropped:
        changes += f", and {len(dropped)} file(s) of the snapshot were left out:\n\n" + "".join(
            f"- `{path}`: {why}\n" for path, why in dropped)
    else:
        changes += ".\n"
    return (f"# PBC white cells (Acevedo et al. 2020), four classes\n\n"
            f"{len(cells):,} JPEG images, one per cell: {counts}.\n\n"
            f"## Credit and licence\n\n{CREDIT}\nCredit the authors wherever these images, or a model "
            "trained on them, are shown.\n\n"
            f"## Source\n\n{snapshot.origin}, folder `wbc/{{{','.join(UPSTREAM_CLASSES)}}}/`, fetched by "
            "`python -m hematolib download --dataset pbc`, which checked every file (sha256 and size) "
            f"against the kit's manifest. {MANIFEST_FILE} lists the sha256 of every image here.\n\n"
            f"## Changes made\n\n{changes}")


def find_pbc_dir() -> Path:
    """Where the PBC images are: `HEMATO_PBC`, else `data/pbc`; DataNotFoundError when neither."""
    from_env = env_path("HEMATO_PBC")
    if from_env is not None:
        if not from_env.exists():
            raise DataNotFoundError(f"HEMATO_PBC={from_env} does not exist. {HOW_TO_GET_PBC}")
        return from_env
    local = default_target()
    if not local.exists():
        raise DataNotFoundError(f"No PBC dataset found: HEMATO_PBC is not set and {local} does not exist. "
                                f"{HOW_TO_GET_PBC}")
    return local


def load_pbc(root: str | Path, check: str = "quick") -> Dataset:
    """The PBC images in `root/<CLASS>/`, as split "PBC" with one original cell per image.

    check: "quick", "full" or "none", as in `data.load_dataset`; unreadable files are skipped and
    listed in `Dataset.problems` (with a warning), not fatal.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: the PBC folder does not exist. {HOW_TO_GET_PBC}")
    try:
        records, strays = _list_split(root, SPLIT, {})
    except DatasetLayoutError as exc:
        raise DatasetLayoutError(f"{exc} A PBC folder holds the class folders directly, as "
                                 "`python -m hematolib download --dataset pbc` writes them.") from None
    problems = [(p, "not an image file") for p in strays]
    checker = {"quick": quick_check, "full": full_check, "none": None}[check]
    kept: list[ImageRecord] = []
    for r in records:
        why = checker(r.path) if checker else None
        (problems.append((r.path, why)) if why else kept.append(r))
    if problems:
        listing = "; ".join(f"{p.relative_to(root)}: {why}" for p, why in problems[:5])
        warnings.warn(f"Skipped {len(problems)} file(s) in {root}: {listing}"
                      + (" ..." if len(problems) > 5 else ""), stacklevel=2)
    return Dataset(root, root, {SPLIT: kept}, problems)


def open_pbc(root: str | Path | None = None, check: str = "quick") -> Dataset:
    """The PBC images at `root`, else at `HEMATO_PBC`, else in data/pbc (see `load_pbc`)."""
    return load_pbc(root if root else find_pbc_dir(), check=check)
