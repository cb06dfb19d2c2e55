"""The PBC download and finder, against an HTTP server on 127.0.0.1 serving snapshots built here."""

from __future__ import annotations

import io
import os
import tomllib
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from hematolib import cli, pbc
from hematolib.config import CLASS_NAMES
from hematolib.data import DataNotFoundError, DatasetLayoutError
from hematolib.download import DownloadError, UnsafeArchiveError
from hematolib.files import sha256_file
from tests.test_download import serve, server  # noqa: F401 - the 127.0.0.1 server fixture

TOP = "PBC_dataset-test"
ROOT = Path(__file__).resolve().parent.parent


def jpeg(shade: int) -> bytes:
    """A tiny JPEG whose bytes differ with `shade`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (shade, 255 - shade, (shade * 7) % 256)).save(buf, "JPEG")
    return buf.getvalue()


def snapshot_files() -> dict[str, bytes]:
    """The four-class files of a fake snapshot, by path under its top folder (what the manifest lists)."""
    files = {f"wbc/{name}/{prefix}_{i}.jpg": jpeg(40 * k + 10 * i)
             for k, (name, prefix) in enumerate([("eosinophil", "EO"), ("lymphocyte", "LY"),
                                                 ("monocyte", "MO"), ("neutrophil", "SNE")])
             for i in range(1, 4)}
    files["wbc/eosinophil/EO_9.jpg"] = files["wbc/eosinophil/EO_1.jpg"]  # one cell under two names
    files["wbc/eosinophil/EO_7.jpg"] = jpeg(250)
    files["wbc/neutrophil/BNE_7.jpg"] = jpeg(250)  # the same bytes in another class
    files["wbc/neutrophil/.DS_1.jpg"] = b"\0\0\0\1Bud1" + b"\0" * 100  # a stray macOS file
    return files


DECOYS = {  # outside the four wbc/ class folders: never extracted, never checked
    "README.md": b"# PBC_dataset\n",
    "wbc/basophil/BA_1.jpg": jpeg(5),
    "other_types/basophil/BA_2.jpg": jpeg(4),  # where upstream keeps the other four classes
    "wbc/platelet/PLATELET_1.jpg": jpeg(6),
    "wbc_resized/eosinophil/EO_1.jpg": jpeg(7),
    "wbc_reorg/train/eosinophil/EO_2.jpg": jpeg(8),
}


def archive(files: dict[str, bytes], top: str = TOP, extra: dict[str, bytes] | None = None) -> bytes:
    """A GitHub-like zip: every file under `top`/, plus `extra` members named as given."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/", b"")
        for name, payload in {**files, **DECOYS}.items():
            zf.writestr(f"{top}/{name}", payload)
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    return buf.getvalue()


def manifest_of(files: dict[str, bytes], path: Path) -> Path:
    import hashlib

    path.write_text("".join(f"{hashlib.sha256(b).hexdigest()}  {len(b)}  {name}\n"
                            for name, b in sorted(files.items())))
    return path


@pytest.fixture
def make_snapshot(server, tmp_path):  # noqa: F811 - the imported fixture
    """Serve an archive; return a Snapshot whose manifest lists `snapshot_files()`."""
    routes, base = server
    manifest = manifest_of(snapshot_files(), tmp_path / "manifest.sha256")

    def make(body: bytes, name: str = "/pbc.zip") -> pbc.Snapshot:
        return pbc.Snapshot(url=serve(routes, base, name, body), folder=TOP, manifest=manifest,
                            origin="a test snapshot")
    return make


def listing(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_download_lays_out_one_image_per_cell_and_the_finder_opens_it(make_snapshot, tmp_path, monkeypatch):
    files = snapshot_files()
    out = tmp_path / "data"
    target = pbc.download_pbc(out / "pbc", make_snapshot(archive(files)), progress=False)
    assert sorted(p.name for p in target.iterdir()) == sorted([*CLASS_NAMES, "MANIFEST.sha256", "SOURCE.md"])
    assert sorted(p.name for p in (target / "EOSINOPHIL").iterdir()) == ["EO_1.jpg", "EO_2.jpg", "EO_3.jpg"]
    assert sorted(p.name for p in (target / "NEUTROPHIL").iterdir()) == ["SNE_1.jpg", "SNE_2.jpg", "SNE_3.jpg"]
    assert (target / "MONOCYTE" / "MO_2.jpg").read_bytes() == files["wbc/monocyte/MO_2.jpg"]
    assert not list(target.rglob("BA_*")) and not list(target.rglob("PLATELET_*"))  # 8-class folders ignored
    assert [p.name for p in out.iterdir()] == ["pbc"]  # no temporary leftovers
    manifest = (target / "MANIFEST.sha256").read_text().splitlines()
    assert len(manifest) == 12 and f"{sha256_file(target / 'LYMPHOCYTE/LY_3.jpg')}  LYMPHOCYTE/LY_3.jpg" in manifest

    monkeypatch.setenv("HEMATO_PBC", str(target))
    ds = pbc.open_pbc()
    records = ds.splits["PBC"]
    assert ds.counts() == {"PBC": dict.fromkeys(CLASS_NAMES, 3)} and not ds.problems
    assert {r.split for r in records} == {"PBC"} and len({r.original for r in records}) == 12
    assert {r.class_name for r in records if r.path.name == "LY_1.jpg"} == {"LYMPHOCYTE"}


def test_duplicates_and_hidden_files_are_left_out_and_said_so(make_snapshot, tmp_path):
    target = pbc.download_pbc(tmp_path / "pbc", make_snapshot(archive(snapshot_files())), progress=False)
    assert (target / "EOSINOPHIL/EO_1.jpg").exists() and not (target / "EOSINOPHIL/EO_9.jpg").exists()
    assert not list(target.rglob("EO_7.jpg")) and not list(target.rglob("BNE_7.jpg"))  # label in doubt
    assert not list(target.rglob(".DS_*"))
    note = (target / "SOURCE.md").read_text()
    assert "Acevedo" in note and "Data in Brief 30:105474" in note and "doi:10.17632/snkd93bnjr.1" in note
    assert "CC BY 4.0" in note and "12 JPEG images, one per cell" in note
    assert "`wbc/eosinophil/EO_9.jpg`: the same bytes as wbc/eosinophil/EO_1.jpg (kept)" in note
    assert "`wbc/neutrophil/BNE_7.jpg`: the same bytes as wbc/eosinophil/EO_7.jpg, a different class" in note
    assert "`wbc/neutrophil/.DS_1.jpg`: a hidden file" in note and "4 file(s) of the snapshot were left out" in note


def good_copy(make_snapshot, tmp_path) -> tuple[Path, dict[str, str]]:
    target = pbc.download_pbc(tmp_path / "pbc", make_snapshot(archive(snapshot_files()), "/good.zip"),
                              progress=False)
    return target, listing(target)


def test_a_changed_file_is_refused_and_the_good_copy_stays(make_snapshot, tmp_path):
    target, before = good_copy(make_snapshot, tmp_path)
    files = snapshot_files()
    changed = bytearray(files["wbc/lymphocyte/LY_2.jpg"])
    changed[200] ^= 0xFF  # same size, other bytes
    files["wbc/lymphocyte/LY_2.jpg"] = bytes(changed)
    with pytest.raises(DownloadError, match=r"1 problem\(s\)\): wbc/lymphocyte/LY_2.jpg: its sha256 differs"
                                            r".*please report it.*pbc was left as it was"):
        pbc.download_pbc(target, make_snapshot(archive(files)), force=True, progress=False)
    assert listing(target) == before and [p.name for p in tmp_path.iterdir() if p.name != "manifest.sha256"] == ["pbc"]


def test_a_missing_an_extra_and_a_resized_file_are_each_named(make_snapshot, tmp_path):
    files = snapshot_files()
    del files["wbc/monocyte/MO_1.jpg"]
    files["wbc/eosinophil/EO_new.jpg"] = jpeg(99)
    files["wbc/neutrophil/SNE_2.jpg"] += b"\0"
    with pytest.raises(DownloadError) as caught:
        pbc.download_pbc(tmp_path / "pbc", make_snapshot(archive(files)), progress=False)
    message = str(caught.value)
    assert "3 problem(s)" in message and "wbc/monocyte/MO_1.jpg: missing" in message
    assert "wbc/eosinophil/EO_new.jpg: not in the manifest" in message
    assert "wbc/neutrophil/SNE_2.jpg: " in message and "bytes, the manifest says" in message
    assert not (tmp_path / "pbc").exists()


@pytest.mark.parametrize("name", ["../../evil.jpg", f"{TOP}/wbc/eosinophil/../../../evil.jpg",
                                  "/tmp/evil.jpg"])
def test_an_unsafe_member_is_refused_and_the_good_copy_stays(make_snapshot, tmp_path, name):
    target, before = good_copy(make_snapshot, tmp_path)
    body = archive(snapshot_files(), extra={name: b"x"})
    with pytest.raises(UnsafeArchiveError, match="refusing archive member"):
        pbc.download_pbc(target, make_snapshot(body), force=True, progress=False)
    assert listing(target) == before and not list(tmp_path.parent.rglob("evil.jpg"))


def test_a_link_outside_the_wbc_folders_is_refused_too(make_snapshot, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(f"{TOP}/wbc_reorg/link"), "/etc/passwd")
        zf.infolist()[0].external_attr = 0o120777 << 16
    with pytest.raises(UnsafeArchiveError, match="is a link"):
        pbc.download_pbc(tmp_path / "pbc", make_snapshot(buf.getvalue()), progress=False)
    assert not (tmp_path / "pbc").exists()


def test_an_archive_without_the_snapshot_folder_says_so(make_snapshot, tmp_path):
    with pytest.raises(DownloadError, match="has no folder PBC_dataset-test/wbc/; is the URL right"):
        pbc.download_pbc(tmp_path / "pbc", make_snapshot(archive(snapshot_files(), top="other-main")),
                         progress=False)


def test_a_verified_copy_is_kept_and_a_damaged_one_fetched_again(make_snapshot, tmp_path, server):  # noqa: F811
    target, before = good_copy(make_snapshot, tmp_path)
    snapshot = make_snapshot(archive(snapshot_files()), "/again.zip")
    routes, _ = server
    served = dict(routes)
    routes.clear()  # the server now answers 404: a download would fail
    assert pbc.download_pbc(target, snapshot, progress=False) == target
    (target / "MONOCYTE/MO_3.jpg").unlink()
    with pytest.raises(DownloadError, match="answered 404.*pbc was left as it was"):
        pbc.download_pbc(target, snapshot, progress=False)
    routes.update(served)
    assert pbc.download_pbc(target, snapshot, progress=False) == target and listing(target) == before


def test_the_command_line_downloads_pbc_and_credits_it(make_snapshot, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pbc, "PINNED", make_snapshot(archive(snapshot_files())))
    assert cli.main(["download", "--dataset", "pbc", "--target", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert f"PBC ready in {tmp_path / 'p'}" in out and "Acevedo" in out and "CC BY 4.0" in out
    assert len(list((tmp_path / "p").glob("*/*.jpg"))) == 12
    assert cli.main(["download", "--dataset", "pbc", "--source", "kaggle"]) == 2
    assert "--source kaggle is for the Kaggle dataset" in capsys.readouterr().err


def test_a_failed_command_line_download_is_one_clear_line(make_snapshot, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pbc, "PINNED", make_snapshot(b"not a zip" * 20))
    assert cli.main(["download", "--dataset", "pbc", "--target", str(tmp_path / "p")]) == 2
    assert "error: " in capsys.readouterr().err and not (tmp_path / "p").exists()


# --- finding and opening -------------------------------------------------------------------------

def test_no_pbc_anywhere_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HEMATO_PBC", raising=False)
    monkeypatch.setattr(pbc, "PROJECT_DIR", tmp_path)
    with pytest.raises(DataNotFoundError, match="HEMATO_PBC is not set.*`python -m hematolib download --dataset pbc`"):
        pbc.open_pbc()
    monkeypatch.setenv("HEMATO_PBC", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="HEMATO_PBC=.*nowhere does not exist"):
        pbc.open_pbc()


def test_data_pbc_is_found_when_hemato_pbc_is_unset(make_snapshot, tmp_path, monkeypatch):
    monkeypatch.delenv("HEMATO_PBC", raising=False)
    monkeypatch.setattr(pbc, "PROJECT_DIR", tmp_path)
    assert pbc.download_pbc(snapshot=make_snapshot(archive(snapshot_files())), progress=False) == tmp_path / "data/pbc"
    assert pbc.open_pbc().root == tmp_path / "data" / "pbc"


def test_a_corrupt_image_is_reported_not_fatal(make_snapshot, tmp_path):
    target = pbc.download_pbc(tmp_path / "pbc", make_snapshot(archive(snapshot_files())), progress=False)
    broken = target / "MONOCYTE" / "MO_2.jpg"
    broken.write_bytes(broken.read_bytes()[:-2])  # cut short: no end marker
    (target / "LYMPHOCYTE" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="Skipped 2 file"):
        ds = pbc.load_pbc(target)
    assert dict(ds.problems) == {broken: "truncated JPEG (no end-of-image marker)",
                                 target / "LYMPHOCYTE" / "notes.txt": "not an image file"}
    assert ds.counts()["PBC"] == {"EOSINOPHIL": 3, "LYMPHOCYTE": 3, "MONOCYTE": 2, "NEUTROPHIL": 3}


def test_a_folder_that_is_not_pbc_is_explained(tmp_path):
    for name in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(jpeg(1))
    with pytest.raises(DatasetLayoutError, match=r"missing NEUTROPHIL.*A PBC folder holds the class folders"):
        pbc.load_pbc(tmp_path)


# --- the shipped manifest and the real images ---------------------------------------------------

def test_the_shipped_manifest_is_the_pinned_snapshots_four_classes():
    manifest = pbc.read_manifest(pbc.PINNED.manifest)
    assert len(manifest) == 9081
    images = Counter(p.split("/")[1] for p in manifest if not p.split("/")[2].startswith("."))
    assert images == {"eosinophil": 3117, "lymphocyte": 1214, "monocyte": 1420, "neutrophil": 3329}  # SOURCE.md
    assert pbc.PINNED.url == f"https://github.com/kylewang1999/PBC_dataset/archive/{pbc.COMMIT}.zip"
    assert pbc.PINNED.folder == "PBC_dataset-c3c0681e2937577a26532c4c63411557fcd0fb29"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "pbc-wbc.sha256" in package_data["hematolib"]


def test_one_image_per_cell_of_the_real_snapshot():
    cells, dropped = pbc.select_cells(pbc.read_manifest(pbc.PINNED.manifest))
    assert Counter(c.split("/")[0] for c in cells) == {"EOSINOPHIL": 3110, "LYMPHOCYTE": 1214,
                                                      "MONOCYTE": 1419, "NEUTROPHIL": 3328}
    assert len(dropped) == 10 and {"wbc/eosinophil/EO_225902.jpg", "wbc/neutrophil/BNE_191112.jpg",
                                   "wbc/neutrophil/.DS_169665.jpg"} <= dict(dropped).keys()


def test_a_bad_manifest_line_is_named(tmp_path):
    bad = tmp_path / "m.sha256"
    bad.write_text(f"{'a' * 64}  12  wbc/eosinophil/EO_1.jpg\n{'b' * 64}  twelve  wbc/eosinophil/EO_2.jpg\n")
    with pytest.raises(ValueError, match="line 2: expected"):
        pbc.read_manifest(bad)


@pytest.fixture(scope="module")
def real_pbc() -> Path:
    """The shared PBC sample (HEMATO_PBC, else ../shared beside the checkout, as CI lays it out)."""
    path = Path(os.environ.get("HEMATO_PBC") or ROOT.parent / "shared" / "data" / "pbc-barcelona")
    if not (path / "MANIFEST.sha256").is_file():
        pytest.skip("PBC images not available: set HEMATO_PBC")
    return path


@pytest.mark.real_data
def test_the_real_pbc_sample_opens_and_matches_the_shipped_manifest(real_pbc):
    ds = pbc.open_pbc(real_pbc)
    assert ds.counts()["PBC"] == {"EOSINOPHIL": 749, "LYMPHOCYTE": 750, "MONOCYTE": 750, "NEUTROPHIL": 749}
    assert not ds.problems
    upstream = pbc.read_manifest(pbc.PINNED.manifest)
    for r in ds.splits["PBC"]:
        assert upstream[f"wbc/{r.class_name.lower()}/{r.path.name}"] == (sha256_file(r.path), r.path.stat().st_size)
