"""Download the blood-cell dataset from a pinned public source: checked, complete, safely extracted."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Callable

from .config import PROJECT_DIR, SPLITS
from .files import sha256_file

_COMMIT = "0b22eb2084b1004d464fb5ab87adc85ab94b2079"

# Per split and class: (number of images, sha256 over the sorted lines "<file name> <sha256>\n").
# Made from a copy checked byte for byte against the Kaggle download.
KAGGLE_CONTENTS: dict[tuple[str, str], tuple[int, str]] = {
    ("TEST", "EOSINOPHIL"): (623, "ac6f1caf55f4b035724b8c2df43da3596213c0e42f34e7557edc4fe2ed3df42c"),
    ("TEST", "LYMPHOCYTE"): (620, "6426cd31032bec2a988893a5405a1551e1774b62fc46e9974b9135459727ae4b"),
    ("TEST", "MONOCYTE"): (620, "841253d82de4acdd870977d726c7b5f1b197b280d2c5abc7fcc94e7aaf31e572"),
    ("TEST", "NEUTROPHIL"): (624, "162ff335f129c0c3f5ca19bf47240660cf4ee6c4a920a408846a5fd119250ccd"),
    ("TEST_SIMPLE", "EOSINOPHIL"): (13, "64b02eff55fe72e5d4fc05c9e3ab219b018350de366b229e23e4e13df7bcb809"),
    ("TEST_SIMPLE", "LYMPHOCYTE"): (6, "53cb69400ae365cea626e9b3d10008fe15df05bd46e1ddb3e73e97b22470fabb"),
    ("TEST_SIMPLE", "MONOCYTE"): (4, "777462fd8774e80a26ee23dcddd9be66f20d49657a67313c1d18cd3df0e1cf85"),
    ("TEST_SIMPLE", "NEUTROPHIL"): (48, "691cb089d8bbcb408e3b2af3647f98cc3348cc49fb620ba35f03460f9d353317"),
    ("TRAIN", "EOSINOPHIL"): (2497, "100b598c7093a00f34f03d83349def41f461dca6a0071f793e103b91ae9aa9c5"),
    ("TRAIN", "LYMPHOCYTE"): (2483, "338d4d44ed56c10c7edd4a9b44cf284cf5bce03bdae3d0a6692213f73e1a3d91"),
    ("TRAIN", "MONOCYTE"): (2478, "1fb2e390bdf4ef2dafa53945800a20898a27d9505423be43c56d513ee68320ca"),
    ("TRAIN", "NEUTROPHIL"): (2499, "b2983b07e6588a1bb5b3f81fcd1b9f864ea5b704f2eddfa64a152c1b0d95dbaa"),
}


class DownloadError(RuntimeError):
    """The download failed or what arrived is not the dataset; nothing was put in place."""


class UnsafeArchiveError(DownloadError):
    """The archive tries to write outside its folder (zip slip, absolute paths, links)."""


@dataclass(frozen=True)
class Source:
    """Where to fetch the dataset and how to check it."""

    url: str
    images_prefix: str  # folder inside the archive that holds TRAIN/TEST/TEST_SIMPLE
    archive_sha256: str | None = None  # GitHub archives are not byte-stable; contents are checked
    contents: dict = field(default_factory=lambda: KAGGLE_CONTENTS)  # (split, class) -> (n, digest)


GITHUB_SOURCE = Source(
    url=f"https://github.com/dhruvp/wbc-classification/archive/{_COMMIT}.zip",
    images_prefix=f"wbc-classification-{_COMMIT}/images/",
)


URL_ENV = "HEMATO_DATA_URL"  # a mirror of the pinned archive (a classroom server, say)


def pinned_source() -> Source:
    """The pinned source, fetched from the mirror named by HEMATO_DATA_URL when set: what arrives
    is checked against the same digests, so a mirror can serve only the same images."""
    url = os.environ.get(URL_ENV)
    return replace(GITHUB_SOURCE, url=url) if url else GITHUB_SOURCE


def default_target() -> Path:
    return PROJECT_DIR / "data" / "blood-cells"


def content_digest(folder: Path) -> tuple[int, str]:
    """(number of images, digest over sorted "<name> <sha256>" lines) of one class folder."""
    lines = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            lines.append(f"{p.name} {sha256_file(p)}\n")
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def verify_images(images_dir: Path, contents: dict) -> None:
    """Check counts (and digests, where given) per split and class; raise DownloadError if off."""
    problems = []
    for (split, class_name), (n_expected, digest) in sorted(contents.items()):
        folder = images_dir / split / class_name
        if not folder.is_dir():
            problems.append(f"{split}/{class_name}: folder missing")
            continue
        n, got = content_digest(folder)
        if n != n_expected:
            problems.append(f"{split}/{class_name}: expected {n_expected} images, got {n}")
        elif digest and got != digest:
            problems.append(f"{split}/{class_name}: {n} images but their contents differ from "
                            "the pinned dataset")
    if problems:
        raise DownloadError("The downloaded dataset is not the expected one: " + "; ".join(problems))


def checks_out(verify: Callable[[], None]) -> bool:
    """Whether `verify()` passes; a copy in place that does not (incomplete or changed) is fetched again."""
    try:
        verify()
        return True
    except DownloadError:
        return False


def work_folder(target: Path) -> Path:
    """A new temporary folder next to `target`, on the same disk, so the result renames into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.download-", dir=target.parent))


def download_dataset(target: str | Path | None = None, source: Source | None = None,
                     force: bool = False, progress: bool = True, timeout: float = 60) -> Path:
    """Fetch, check and unpack the dataset into `target` (default data/blood-cells) from `source`
    (default: `pinned_source()`); return it.

    Writes to temporary names next to `target` and renames into place only when everything
    checked out, so an interrupted or bad download never replaces a good dataset.
    """
    source = source or pinned_source()
    target = Path(target) if target is not None else default_target()
    images_dir = target / "dataset2-master" / "images"
    if not force and images_dir.is_dir() and checks_out(lambda: verify_images(images_dir, source.contents)):
        return target
    work = work_folder(target)
    try:
        archive = fetch(source.url, work / "archive", sha256=source.archive_sha256, label="blood-cells",
                        offline_hint="Offline, point HEMATO_DATA at a copy of the dataset.",
                        progress=progress, timeout=timeout)
        unpacked = work / "unpacked"
        extract_safely(archive, unpacked)
        archive.unlink()
        found = unpacked / source.images_prefix
        if not found.is_dir():
            raise DownloadError(f"the archive has no folder {source.images_prefix}; is the URL right?")
        verify_images(found, source.contents)
        staged = work / "staged"
        (staged / "dataset2-master").mkdir(parents=True)
        found.rename(staged / "dataset2-master" / "images")
        swap_into_place(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def check_free_space(folder: Path, needed: float) -> None:
    """Raise DownloadError when `folder`'s disk has less than `needed` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DownloadError(f"not enough disk space in {folder}: the download needs about "
                            f"{needed / 1e6:.0f} MB, {free / 1e6:.0f} MB are free.")


def fetch(url: str, dest: Path, sha256: str | None = None, label: str = "download",
          unpacked_bytes: int | None = None, offline_hint: str = "", progress: bool = True,
          timeout: float = 60) -> Path:
    """Stream `url` to `dest` with a progress bar, checking disk space first (room for the
    archive plus `unpacked_bytes`, by default 1.2 times the archive) and completeness and hash after."""
    from tqdm.auto import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "hematovision"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: the server answered {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason}). Are you online? {offline_hint}".rstrip()
                            ) from None
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        if total:
            check_free_space(dest.parent, total + (1.2 * total if unpacked_bytes is None else unpacked_bytes))
        h = hashlib.sha256()
        received = 0
        with open(dest, "wb") as fh, tqdm(total=total or None, unit="B", unit_scale=True,
                                          desc=label, disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(1 << 16)
                except (OSError, ValueError) as exc:
                    raise DownloadError(f"{url}: the connection broke after {received:,} "
                                        f"bytes ({exc}); try again.") from None
                if not chunk:
                    break
                fh.write(chunk)
                h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total and received != total:
        raise DownloadError(f"{url}: the download is incomplete ({received:,} of {total:,} "
                            "bytes); try again.")
    if sha256 and h.hexdigest() != sha256:
        raise DownloadError(f"{url}: checksum mismatch (expected sha256 {sha256}, got "
                            f"{h.hexdigest()}); the file is damaged or was changed.")
    return dest


def _check_member(name: str) -> PurePosixPath:
    """A member path that is relative and stays inside the target, or UnsafeArchiveError."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchiveError(f"refusing archive member with an absolute path: {name!r}")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"refusing archive member that leaves the folder: {name!r}")
    return path


def extract_safely(archive: Path, dest: Path, keep: Callable[[str], bool] | None = None) -> None:
    """Unpack a zip or tar archive into `dest`, refusing absolute paths, `..` and links.

    Every member is checked; with `keep`, only the members whose name it accepts are written.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"refusing archive member that is a link: "
                                             f"{info.filename!r}")
            zf.extractall(dest, members=[i for i in infos if keep is None or keep(i.filename)])
        return
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError:
        raise DownloadError(f"{archive.name}: not a zip or tar archive (damaged download?).") from None
    with tf:
        members = tf.getmembers()
        for member in members:
            _check_member(member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(f"refusing archive member that is a link: {member.name!r}")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"refusing special file in archive: {member.name!r}")
        tf.extractall(dest, members=[m for m in members if keep is None or keep(m.name)])


def swap_into_place(staged: Path, target: Path) -> None:
    """Replace `target` by `staged` with renames; the old copy is removed only after the swap."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    try:
        staged.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def download_from_kaggle(target: str | Path | None = None) -> Path:
    """Fetch through kagglehub (needs a Kaggle account), check it, and copy it into `target`."""
    try:
        import kagglehub
    except ImportError:
        raise DownloadError("kagglehub is not installed: `pip install kagglehub`, or use "
                            "`python -m hematolib download` (GitHub source).") from None
    from .data import find_images_dir

    target = Path(target) if target is not None else default_target()
    images = find_images_dir(Path(kagglehub.dataset_download("paultimothymooney/blood-cells")))
    verify_images(images, KAGGLE_CONTENTS)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.kaggle-", dir=target.parent))
    try:
        for split in SPLITS:
            shutil.copytree(images / split, work / "staged" / "dataset2-master" / "images" / split)
        swap_into_place(work / "staged", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
