"""Decode untrusted image bytes into RGB arrays, with a clear error for every bad input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 20 * 1024 * 1024  # uploads larger than this are refused before decoding
MAX_PIXELS = 40_000_000  # decompression-bomb guard: about 7,000 x 5,700
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class ImageDecodeError(ValueError):
    """An image that cannot be used, with a message that says why and what to do."""


def decode_image(data: bytes, name: str = "image", max_bytes: int = MAX_FILE_BYTES,
                 max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """Decode image bytes to an RGB uint8 array (H, W, 3) plus notes on any conversion made.

    Raises ImageDecodeError for empty, oversized, non-image, truncated or bomb-sized input.
    """
    size = len(data)
    if size == 0:
        raise ImageDecodeError(f"{name}: the file is empty (0 bytes).")
    if size > max_bytes:
        raise ImageDecodeError(
            f"{name}: the file is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB. "
            "Resize or crop it first.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {width}x{height} pixels is too large (limit {max_pixels:,} pixels); "
                    "crop the image around the cell.")
            img.load()
            return _to_rgb(img, name)  # reads further frames and tags: as hostile as the header
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(
            f"{name}: this is not an image file PIL can read (expected JPEG, PNG, BMP, GIF, "
            "TIFF or WebP).") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{name}: the image is too large to decode safely.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(
            f"{name}: the image is damaged or truncated and cannot be decoded ({exc}).") from None
    except Exception as exc:  # PIL plugins raise odd types on hostile input
        raise ImageDecodeError(f"{name}: the image cannot be decoded ({type(exc).__name__}).") \
            from None


def _to_rgb(img: Image.Image, name: str) -> tuple[np.ndarray, list[str]]:
    """Convert any PIL mode to 8-bit RGB and say what was converted."""
    notes: list[str] = []
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"{name}: animated image with {img.n_frames} frames; using the first.")
        img.seek(0)
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
        notes.append(f"{name}: {mode} high-bit-depth image scaled to 8 bits.")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
        notes.append(f"{name}: transparency flattened onto white.")
    elif img.mode == "CMYK":
        notes.append(f"{name}: CMYK image converted to RGB.")
    elif img.mode in ("L", "1"):
        notes.append(f"{name}: grayscale image; the model was trained on colour stains, so "
                     "expect a less reliable prediction.")
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ImageDecodeError(f"{name}: the image is only {arr.shape[1]}x{arr.shape[0]} pixels; "
                               "at least 8x8 is needed.")
    return arr, notes


def read_image(path: str | Path, **limits) -> tuple[np.ndarray, list[str]]:
    """Read and decode an image file; see `decode_image`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{path}: is a folder, not an image file.") from None
    except PermissionError:
        raise ImageDecodeError(f"{path}: permission denied.") from None
    return decode_image(data, name=str(path), **limits)


def quick_check(path: Path) -> str | None:
    """A cheap test of one dataset file: None when it looks fine, else what is wrong.

    Reads the header and, for JPEG, checks the end-of-image marker, which catches truncation
    without a full decode.
    """
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            fmt = img.format
            img.size  # noqa: B018 - parsing the header is the check
        if fmt == "JPEG":
            with path.open("rb") as fh:
                fh.seek(max(0, size - 2))
                if fh.read(2) != b"\xff\xd9":
                    return "truncated JPEG (no end-of-image marker)"
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except OSError as exc:
        return f"unreadable ({exc})"
    return None


def full_check(path: Path) -> str | None:
    """A full decode of one dataset file: None when it decodes, else what is wrong."""
    try:
        read_image(path)
    except ImageDecodeError as exc:
        return str(exc).split(": ", 1)[-1]
    return None
