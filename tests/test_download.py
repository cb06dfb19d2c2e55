"""The download helper, against an HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hematolib import download
from hematolib.data import load_dataset
from hematolib.download import (DownloadError, Source, UnsafeArchiveError, content_digest,
                                download_dataset, extract_safely)
from hematolib.files import sha256_file

PREFIX = "wbc-classification-test/images/"
Served = namedtuple("Served", "body declared_length status")


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Served] = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        served = self.routes.get(self.path)
        if served is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(served.status)
        self.send_header("Content-Length", str(served.declared_length))
        self.end_headers()
        self.wfile.write(served.body)  # may be shorter than declared: a broken connection

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """Serve `routes` on 127.0.0.1; yields (routes dict, base URL)."""
    routes: dict[str, Served] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield routes, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def synthetic_contents(tmp_path_factory):
    from hematolib.synthetic import make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path_factory.mktemp("dl") / "src", originals=(2, 1), copies=2,
                                  size=(64, 48))
    images = root / "dataset2-master" / "images"
    contents = {(s.name, c.name): content_digest(c) for s in images.iterdir() if s.is_dir() for c in s.iterdir()}
    return images, contents


def zip_of(images: Path, extra: dict[str, bytes] | None = None, prefix: str = PREFIX) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(images.rglob("*.jpeg")):
            zf.write(p, prefix + p.relative_to(images).as_posix())
        for name, payload in (extra or {}).items():
            zf.writestr(name, payload)
    return buf.getvalue()


def serve(routes, base, path, body, declared=None, status=200) -> str:
    routes[path] = Served(body, len(body) if declared is None else declared, status)
    return base + path


def source(url, contents, sha=None) -> Source:
    return Source(url=url, images_prefix=PREFIX, archive_sha256=sha, contents=contents)


def test_download_puts_a_verified_dataset_in_place(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    body = zip_of(images)
    url = serve(routes, base, "/ds.zip", body)
    import hashlib

    target = download_dataset(tmp_path / "blood-cells", source(url, contents, hashlib.sha256(body).hexdigest()),
                              progress=False)
    ds = load_dataset(target)
    assert sum(ds.counts()["TRAIN"].values()) == 16
    assert sha256_file(next((target / "dataset2-master/images/TRAIN/MONOCYTE").iterdir())) == \
        sha256_file(next((images / "TRAIN/MONOCYTE").iterdir()))
    assert [p.name for p in tmp_path.iterdir()] == ["blood-cells"]  # no temporary leftovers


def test_a_tar_archive_works_too(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(images, arcname=PREFIX.rstrip("/"))
    url = serve(routes, base, "/ds.tar.gz", buf.getvalue())
    assert load_dataset(download_dataset(tmp_path / "bc", source(url, contents), progress=False))


def test_truncated_download_is_refused_and_leaves_nothing(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    body = zip_of(images)
    url = serve(routes, base, "/cut.zip", body[: len(body) // 2], declared=len(body))
    with pytest.raises(DownloadError, match="incomplete|connection broke"):
        download_dataset(tmp_path / "bc", source(url, contents), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_is_refused(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/ds.zip", zip_of(images))
    with pytest.raises(DownloadError, match="checksum mismatch.*expected sha256 0000"):
        download_dataset(tmp_path / "bc", source(url, contents, sha="0" * 64), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_counts_and_changed_contents_are_refused(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/ds.zip", zip_of(images))
    wrong_count = {**contents, ("TRAIN", "MONOCYTE"): (5, contents[("TRAIN", "MONOCYTE")][1])}
    with pytest.raises(DownloadError, match="TRAIN/MONOCYTE: expected 5 images, got 4"):
        download_dataset(tmp_path / "bc", source(url, wrong_count), progress=False)
    changed = {**contents, ("TEST", "EOSINOPHIL"): (2, "f" * 64)}
    with pytest.raises(DownloadError, match="TEST/EOSINOPHIL: 2 images but their contents differ"):
        download_dataset(tmp_path / "bc", source(url, changed), progress=False)


def test_a_failed_download_keeps_the_good_dataset(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    good = download_dataset(tmp_path / "bc", source(serve(routes, base, "/ok.zip", zip_of(images)), contents),
                            progress=False)
    before = sorted(p.name for p in (good / "dataset2-master/images/TRAIN/EOSINOPHIL").iterdir())
    bad = serve(routes, base, "/bad.zip", b"garbage" * 100)
    with pytest.raises(DownloadError):
        download_dataset(good, source(bad, contents), force=True, progress=False)
    assert sorted(p.name for p in (good / "dataset2-master/images/TRAIN/EOSINOPHIL").iterdir()) == before


def test_an_existing_verified_dataset_is_not_downloaded_again(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/ok.zip", zip_of(images))
    download_dataset(tmp_path / "bc", source(url, contents), progress=False)
    routes.clear()  # the server now answers 404: a second download would fail
    assert download_dataset(tmp_path / "bc", source(url, contents), progress=False) == tmp_path / "bc"


def test_http_errors_and_refused_connections_are_explained(server, synthetic_contents, tmp_path):
    routes, base = server
    _, contents = synthetic_contents
    with pytest.raises(DownloadError, match="answered 404"):
        download_dataset(tmp_path / "bc", source(base + "/missing.zip", contents), progress=False)
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect.*Are you online"):
        download_dataset(tmp_path / "bc", source(f"http://127.0.0.1:{port}/x.zip", contents),
                         progress=False, timeout=5)


def test_not_enough_disk_space_is_reported_before_writing(server, synthetic_contents, tmp_path, monkeypatch):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/ds.zip", zip_of(images))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 1000))
    with pytest.raises(DownloadError, match="not enough disk space.*1 MB|not enough disk space.*0 MB are free"):
        download_dataset(tmp_path / "bc", source(url, contents), progress=False)
    assert list(tmp_path.iterdir()) == []


# --- malicious archives ---------------------------------------------------------------------------

def make_zip(path: Path, name: str, payload: bytes = b"x", symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, payload)
    return path


@pytest.mark.parametrize("name, message", [
    ("../evil.txt", "leaves the folder"),
    ("images/../../evil.txt", "leaves the folder"),
    ("/tmp/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    ("..\\evil.txt", "leaves the folder"),
])
def test_zip_slip_members_are_refused(tmp_path, name, message):
    archive = make_zip(tmp_path / "evil.zip", name)
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_safely(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not list((tmp_path / "out").iterdir())


def test_zip_symlink_member_is_refused(tmp_path):
    archive = make_zip(tmp_path / "link.zip", "images/link", b"/etc/passwd", symlink=True)
    with pytest.raises(UnsafeArchiveError, match="is a link"):
        extract_safely(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_links_are_refused(tmp_path, kind):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("images/TRAIN/link")
        info.type, info.linkname = kind, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="is a link"):
        extract_safely(archive, tmp_path / "out")


def test_tar_with_dotdot_is_refused(tmp_path):
    archive = tmp_path / "slip.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("../../evil.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UnsafeArchiveError, match="leaves the folder"):
        extract_safely(archive, tmp_path / "out")


def test_malicious_archive_served_over_http_is_refused(server, synthetic_contents, tmp_path):
    routes, base = server
    images, contents = synthetic_contents
    url = serve(routes, base, "/evil.zip", zip_of(images, extra={"../../pwned.txt": b"x"}))
    with pytest.raises(UnsafeArchiveError):
        download_dataset(tmp_path / "deep" / "bc", source(url, contents), progress=False)
    assert not list(tmp_path.rglob("pwned.txt"))


def test_not_an_archive_is_reported(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is an HTML error page, not an archive" * 50)
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        extract_safely(junk, tmp_path / "out")


def test_pinned_source_points_at_the_public_origin():
    assert download.GITHUB_SOURCE.url.startswith("https://github.com/dhruvp/wbc-classification/archive/")
    assert sum(n for n, _ in download.KAGGLE_CONTENTS.values()) == 12515


@pytest.mark.real_data
def test_pinned_digests_match_the_real_dataset(real_dataset):
    download.verify_images(real_dataset.images_dir, download.KAGGLE_CONTENTS)


def test_kaggle_source_without_kagglehub_says_what_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import fails as if not installed
    with pytest.raises(DownloadError, match="kagglehub is not installed: `pip install kagglehub`"):
        download.download_from_kaggle(tmp_path / "bc")


@pytest.mark.real_data
def test_kaggle_download_is_verified_and_copied_into_place(real_root, monkeypatch, tmp_path):
    import sys
    import types

    fake = types.SimpleNamespace(dataset_download=lambda handle: str(real_root))
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    target = download.download_from_kaggle(tmp_path / "bc")
    assert load_dataset(target).counts()["TRAIN"]["MONOCYTE"] == 2478
    assert [p.name for p in tmp_path.iterdir()] == ["bc"]


def test_a_mirror_named_by_hemato_data_url_is_fetched_and_checked_against_the_pinned_digests(
        server, synthetic_contents, tmp_path, monkeypatch, capsys):
    routes, base = server
    images, _ = synthetic_contents
    url = serve(routes, base, "/mirror.zip", zip_of(images, prefix=download.GITHUB_SOURCE.images_prefix))
    monkeypatch.setenv("HEMATO_DATA_URL", url)
    assert download.pinned_source().url == url
    assert download.pinned_source().contents == download.KAGGLE_CONTENTS  # the mirror changes where, not what
    with pytest.raises(DownloadError, match="not the expected one"):   # drawn cells are not the Kaggle images
        download_dataset(tmp_path / "blood-cells", progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.delenv("HEMATO_DATA_URL")
    assert download.pinned_source() == download.GITHUB_SOURCE
    from hematolib import cli

    assert cli.main(["download", "--url", url, "--target", str(tmp_path / "blood-cells")]) != 0
    assert "not the expected one" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_the_second_labs_mirror_is_named_by_hemato_pbc_url(tmp_path, monkeypatch):
    from hematolib import pbc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/pbc.zip"   # nobody listens there
    monkeypatch.setenv("HEMATO_PBC_URL", url)
    assert pbc.pinned_snapshot().url == url and pbc.pinned_snapshot().manifest == pbc.PINNED.manifest
    with pytest.raises(DownloadError, match="127.0.0.1.*cannot connect"):
        pbc.download_pbc(tmp_path / "pbc", progress=False)
    assert list(tmp_path.iterdir()) == []
