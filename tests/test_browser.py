"""End to end: the Voila app in Debian's chromium, driven by Playwright (no browser download).

Uploads a real TEST image and checks the class shown on the page, uploads a non-image and checks
the error, uploads an image without a white cell and checks the warning; uploads a 12 MB photo,
and a file over what the page carries, each followed by a normal image; saves screenshots to
build/test-output/browser/. Voila starts as `make demo` starts it, with its message limit.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from hematolib.config import CLASS_NAMES, Config

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "build" / "test-output" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.real_data]


def demo_message_limit() -> int:
    """The websocket message limit `make demo` gives Voila and the widget (DEMO_MESSAGE_LIMIT)."""
    found = re.search(r"^DEMO_MESSAGE_LIMIT\s*:=\s*(\d+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile sets no DEMO_MESSAGE_LIMIT for `make demo`"
    return int(found.group(1))


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_root, weights_dir):
    """A quick model trained on the real data, and a TEST image it classifies correctly."""
    os.environ["HEMATO_WEIGHTS_DIR"] = str(weights_dir)
    from hematolib import recipe
    from hematolib.data import load_dataset
    from hematolib.inference import Predictor

    models = tmp_path_factory.mktemp("models")
    ds = load_dataset(real_root)
    config = Config(per_class=60, image_size=96, head_epochs=15, fine_tune_epochs=0)
    result = recipe.run(ds, config, out=models / "hematovision.keras", verbose=0)
    predictor = Predictor(result.model)
    for record in ds.test[::37]:
        if predictor.predict_file(record.path).class_name == record.class_name:
            return models, record
    pytest.fail("the quick model got every sampled TEST image wrong")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def voila(trained, real_root, weights_dir, tmp_path_factory):
    models, _ = trained
    port, limit = free_port(), demo_message_limit()
    env = {**os.environ, "HEMATO_MODELS": str(models), "HEMATO_DATA": str(real_root),
           "HEMATO_WEIGHTS_DIR": str(weights_dir), "TF_CPP_MIN_LOG_LEVEL": "3",
           "HEMATO_MESSAGE_LIMIT": str(limit)}
    log = (tmp_path_factory.mktemp("voila") / "voila.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(ROOT / "app" / "classify.ipynb"),
                             "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
                             f"--Voila.tornado_settings={{'websocket_max_message_size': {limit}}}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"voila did not start: {Path(log.name).read_text()[-2000:]}")
    yield url, Path(log.name)
    proc.terminate()
    proc.wait(timeout=20)


def test_upload_in_a_real_browser_shows_the_prediction_and_survives_a_bad_file(chromium, voila, trained,
                                                                              tmp_path):
    from playwright.sync_api import sync_playwright

    _, record = trained
    junk = tmp_path / "holiday.jpg"
    junk.write_text("this is not an image")
    empty = tmp_path / "red-cells-only.png"
    Image.new("RGB", (320, 240), (222, 150, 162)).save(empty)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(voila[0], timeout=120_000)
            button = page.get_by_role("button", name="Upload images")
            button.wait_for(timeout=120_000)

            def upload(path):  # what a user does: click, pick a file in the file chooser
                with page.expect_file_chooser() as chooser:
                    button.click()
                chooser.value.set_files(str(path))

            upload(record.path)
            card = page.locator(".hv-result").first
            card.wait_for(timeout=60_000)
            shown = card.locator(".hv-class").inner_text()
            assert shown.startswith(f"Predicted: {record.class_name} (")
            assert all(c.title() in card.inner_text() for c in CLASS_NAMES)
            page.screenshot(path=str(SHOTS / "prediction.png"), full_page=True)

            upload(junk)
            error = page.locator(".hv-error", has_text="Could not classify holiday.jpg")
            error.wait_for(timeout=60_000)
            assert "not an image file" in error.inner_text()
            page.screenshot(path=str(SHOTS / "error.png"), full_page=True)

            upload(record.path)  # still usable after the bad file
            page.locator(".hv-result").first.wait_for(timeout=60_000)

            upload(empty)  # an image, but no white cell in it: classified, with a warning
            warned = page.locator(".hv-result", has_text="red-cells-only.png: hardly any purple nucleus stain")
            warned.wait_for(timeout=60_000)
            assert "the label is a guess" in warned.inner_text()
        finally:
            browser.close()
    assert (SHOTS / "prediction.png").stat().st_size > 10_000


def test_a_12_mb_photo_and_a_file_over_the_page_limit_leave_the_page_working(chromium, voila, trained,
                                                                              tmp_path):
    from playwright.sync_api import sync_playwright

    _, record = trained
    url, log = voila
    limit = demo_message_limit()
    photo = tmp_path / "microscope-photo.png"  # noise does not compress: 2000x2000 RGB is 12 MB
    Image.frombytes("RGB", (2000, 2000), os.urandom(2000 * 2000 * 3)).save(photo)
    assert 11e6 < photo.stat().st_size < limit
    scan = tmp_path / "whole-slide-scan.tif"  # over the page's limit; sparse, so no disk is used
    with scan.open("wb") as f:
        f.truncate(limit + 1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    start = len(log.read_text())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url, timeout=120_000)
            button = page.get_by_role("button", name="Upload images")
            button.wait_for(timeout=120_000)

            def upload(path):
                with page.expect_file_chooser() as chooser:
                    button.click()
                chooser.value.set_files(str(path))

            def card_for(name):
                card = page.locator(".hv-result", has_text=name)
                card.wait_for(timeout=60_000)
                return card

            upload(photo)  # past tornado's default 10 MiB: the connection must carry it
            assert card_for(photo.name).locator(".hv-class").inner_text().startswith("Predicted: ")
            upload(record.path)
            shown = card_for(record.path.name).locator(".hv-class").inner_text()
            assert shown.startswith(f"Predicted: {record.class_name} (")

            upload(scan)  # over the limit: refused in the page, nothing sent
            refused = page.locator(".hv-not-sent", has_text=f"Not sent: {scan.name}")
            refused.wait_for(timeout=30_000)
            text = refused.inner_text()
            assert f"{(limit + 1) / 1e6:.1f} MB in one upload" in text and "nothing was sent" in text
            assert "File path box" in text and f"hematovision predict {scan.name}" in text
            page.screenshot(path=str(SHOTS / "not-sent.png"), full_page=True)
            box = page.get_by_role("textbox", name="File path:")  # the other way in, as the message says
            box.fill(str(photo))
            box.press("Enter")
            card_for(photo.name)
            assert page.locator(".hv-not-sent").count() == 0
            upload(record.path)  # and the upload button still works
            card_for(record.path.name)
            served = log.read_text()[start:]  # before closing the page, which ends its websocket
        finally:
            browser.close()
    assert "Starting buffering" not in served, served[-2000:]  # the kernel's websocket never dropped
