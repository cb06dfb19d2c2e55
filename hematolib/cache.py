"""Caches on disk: each image's cell crop and its frozen features, computed once and read back after.

Rows are kept per image file (its path, size and modification time) in an uncompressed .npz, so
any later split or subset of the same images is read back instead of computed again.
"""

from __future__ import annotations

import hashlib
import math
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import SMEAR_SIZE, cache_dir
from .data import ImageRecord
from .files import atomic_path
from .model import base_of, features_of, input_size, is_cropping, network_size
from .pipelines import FRAMING, make_pipeline

CHUNK = 1024  # images cropped per step: bounds the float32 memory of a step to about 300 MB at 160 px


def crops(records: Sequence[ImageRecord], image_size: int, batch_size: int = 64, cache: bool = True,
          verbose: int = 0) -> np.ndarray:
    """The cell crop of every smear, as a kit model crops it: uint8 (n, image_size, image_size, 3).

    Decoding and cropping thousands of JPEGs takes minutes, so the crops are computed once and
    kept on disk (`HEMATO_CACHE`, default ~/.cache/hematovision); later calls read them back.
    """
    import keras

    from .layers import CellCrop

    def compute(recs):
        cropper = keras.Sequential([keras.Input((*SMEAR_SIZE, 3)), CellCrop(image_size)], name="cropper")
        out = np.empty((len(recs), image_size, image_size, 3), np.uint8)
        for i in range(0, len(recs), CHUNK):  # chunks: all of TRAIN at once as float32 would take gigabytes
            pipeline = make_pipeline(recs[i:i + CHUNK], SMEAR_SIZE, batch_size=batch_size, cache=False)
            out[i:i + CHUNK] = cropper.predict(pipeline, verbose=verbose)  # whole values: CellCrop rounds
        return out

    return _stored(crop_store_path(image_size), records, compute, cache)


def features(model, records: Sequence[ImageRecord], batch_size: int = 64, cache: bool = True,
             verbose: int = 0) -> np.ndarray:
    """Pooled features of the frozen base for every image, float32 (n, channels), of the image as it
    is (one view). Kept on disk per base weights, so only new images go through the network."""
    def compute(recs):
        extractor = features_of(model)
        if is_cropping(model):
            cells = crops(recs, network_size(model), cache=cache, verbose=verbose)
            return extractor.predict(cells, batch_size=batch_size, verbose=verbose).astype(np.float32)
        pipeline = make_pipeline(recs, input_size(model), batch_size=batch_size, cache=False)
        return extractor.predict(pipeline, verbose=verbose).astype(np.float32)

    return _stored(feature_store_path(model), records, compute, cache)


def weights_digest(model) -> str:
    """A short hash of all the base's weights, so cached features follow the weights they came from."""
    h = hashlib.sha256()
    for w in base_of(model).weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def feature_store_path(model) -> Path:
    """The cache file of features computed with this model's base weights and input (and, for a
    cropping model, the locator's settings: other settings make other crops)."""
    from .locate import settings_digest

    h, w = input_size(model)
    crop = f"_crop{settings_digest()}" if is_cropping(model) else ""
    return cache_dir() / "features" / f"{weights_digest(model)}_{FRAMING}_{h}x{w}_{network_size(model)}{crop}.npz"


def crop_store_path(image_size: int) -> Path:
    """The cache file of cell crops at `image_size`: they depend on the locator, not on any weights."""
    from .locate import settings_digest

    h, w = SMEAR_SIZE
    return cache_dir() / "crops" / f"{settings_digest()}_{FRAMING}_{h}x{w}_{image_size}.npz"


def _file_key(path: Path) -> str:
    """A store row's key: the image's absolute path, size and modification time (a changed file
    gets a new key)."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _mapped_member(path: Path, name: str) -> np.ndarray:
    """Array `name` of the .npz at `path`, memory-mapped rather than read, so that taking a few
    rows reads those rows, not the whole store.

    np.savez stores its members uncompressed, so a member's .npy bytes sit whole inside the zip;
    anything else (a compressed member, say) is read into memory as np.load would.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            with archive.open(info) as fh:
                return np.lib.format.read_array(fh)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the member's local header: its name and extra field precede the data
        if local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"no local header for {name}.npy")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"{name}.npy holds Python objects")
    if offset + dtype.itemsize * math.prod(shape) > path.stat().st_size:
        raise EOFError(f"{name}.npy is shorter than its header says")
    if not math.prod(shape):
        return np.empty(shape, dtype)  # nothing to map (an empty file cannot be mapped)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")


def _still_current(key: str) -> bool:
    """Whether the image a store row was computed from is still there, unchanged."""
    try:
        return _file_key(Path(key.rsplit("|", 2)[0])) == key
    except OSError:
        return False


def _stored(path: Path, records: Sequence[ImageRecord], compute: Callable[[list], np.ndarray],
            cache: bool) -> np.ndarray:
    """`compute(records)` row by row, kept per image file in the .npz at `path`.

    Rows of images already in the store are read back (memory-mapped: only those rows are read);
    only new images are computed, then the store is rewritten atomically (an interrupted run leaves
    the old store intact) without the rows of images changed or deleted since.
    """
    keys = [_file_key(r.path) for r in records]
    stored_keys, stored = [], None
    if cache and path.exists():
        try:
            with np.load(path) as store:
                stored_keys = store["keys"].tolist()
                name = "values" if "values" in store.files else "features"  # older kit versions
            stored = _mapped_member(path, name)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(f"{path}: the cache file is damaged ({type(exc).__name__}: {exc}); "
                          "computing it again.", stacklevel=3)
            stored_keys, stored = [], None
    index = {k: i for i, k in enumerate(stored_keys)}
    missing = {k: r for k, r in zip(keys, records) if k not in index}
    if missing:
        new = compute(list(missing.values()))
        # Rows of files changed or gone since they were stored are dropped: else the store grows by
        # a whole dataset each time one is copied or unpacked again. Indexing copies the kept rows
        # into memory, so the mapped file is closed before it is replaced (Windows refuses that).
        kept = [k for k in index if _still_current(k)]
        stored = np.concatenate([stored[[index[k] for k in kept]], new]) if kept else new
        index = {k: i for i, k in enumerate([*kept, *missing])}
        if cache:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, keys=np.array(list(index)), values=stored)
    return np.asarray(stored[[index[k] for k in keys]])  # a copy in memory: the mapped file closes
