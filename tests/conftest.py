"""Shared fixtures: a small synthetic dataset, the real dataset and weights when CI provides them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REAL_DATA = os.environ.get("HEMATO_DATA", "")
WEIGHTS_DIR = os.environ.get("HEMATO_WEIGHTS_DIR", "")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Feature caches and saved models of one test never leak into another or into the user's."""
    monkeypatch.setenv("HEMATO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("HEMATO_MODELS", str(tmp_path_factory.getbasetemp() / "models"))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (6 TRAIN and 3 TEST originals per class, 4 copies each); read-only use."""
    from hematolib.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "blood-cells",
                                  originals=(6, 3), copies=4, size=(160, 120))


@pytest.fixture
def synthetic_copy(synthetic_root, tmp_path) -> Path:
    """A private copy of the synthetic dataset that a test may damage."""
    dest = tmp_path / "blood-cells"
    shutil.copytree(synthetic_root, dest)
    return dest


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real Kaggle dataset (HEMATO_DATA); tests using it skip when it is not there."""
    if not REAL_DATA or not Path(REAL_DATA).exists():
        pytest.skip("real dataset not available: set HEMATO_DATA (CI does)")
    return Path(REAL_DATA)


@pytest.fixture(scope="session")
def real_dataset(real_root):
    from hematolib.data import load_dataset

    return load_dataset(real_root)


@pytest.fixture(scope="session")
def pbc_root() -> Path:
    """The second lab's images (HEMATO_PBC); tests using them skip when they are not there."""
    root = os.environ.get("HEMATO_PBC", "")
    if not root or not Path(root).exists():
        pytest.skip("second lab's images not available: set HEMATO_PBC (CI does)")
    return Path(root)


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    """The folder holding the ImageNet weight files (HEMATO_WEIGHTS_DIR)."""
    if not WEIGHTS_DIR or not Path(WEIGHTS_DIR).exists():
        pytest.skip("ImageNet weights not available: set HEMATO_WEIGHTS_DIR (CI does)")
    return Path(WEIGHTS_DIR)
