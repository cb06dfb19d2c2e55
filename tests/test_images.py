"""The image decoder: every kind of bad or odd input gets a clear error or a sensible conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hematolib.images import ImageDecodeError, decode_image, quick_check, read_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb_image(w=64, h=48, color=(200, 100, 150)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def test_good_jpeg_decodes_to_rgb_uint8():
    arr, notes = decode_image(encode(rgb_image(), "JPEG"))
    assert arr.shape == (48, 64, 3) and arr.dtype == np.uint8
    assert abs(int(arr[..., 0].mean()) - 200) < 5 and notes == []


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is a text file, not an image", "not an image"),
    (b"%PDF-1.4\n%...", "not an image"),
])
def test_non_images_get_specific_errors(data, message):
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data, name="upload.jpg")


def test_truncated_jpeg_is_reported_as_damaged():
    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(ImageDecodeError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2], name="cut.jpg")


def test_file_over_the_size_limit_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="limit is 1.0 MB"):
        decode_image(b"\xff" * 2_000_000, max_bytes=1_000_000)


def test_decompression_bomb_is_refused():
    bomb = encode(Image.new("L", (5000, 5000)), "PNG")  # small file, 25 M pixels
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(bomb, max_pixels=10_000_000)


def test_tiny_image_is_refused():
    with pytest.raises(ImageDecodeError, match="at least 8x8"):
        decode_image(encode(rgb_image(4, 4), "PNG"))


def test_grayscale_is_converted_with_a_warning_note():
    arr, notes = decode_image(encode(Image.new("L", (32, 32), 90), "PNG"))
    assert arr.shape == (32, 32, 3) and (arr == 90).all()
    assert "grayscale" in notes[0]


def test_rgba_is_flattened_onto_white():
    img = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    arr, notes = decode_image(encode(img, "PNG"))
    assert (arr == 255).all() and "transparency" in notes[0]


def test_sixteen_bit_is_scaled_to_eight_bits():
    ramp = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    arr, notes = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert arr.dtype == np.uint8 and arr.min() == 0 and arr.max() == 255
    assert "8 bits" in notes[0]


def test_cmyk_is_converted_to_rgb():
    arr, notes = decode_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    assert arr.shape == (32, 32, 3)
    assert arr[..., 0].mean() > 200 and arr[..., 1].mean() < 60  # cyan-free, magenta+yellow: red
    assert "CMYK" in notes[0]


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    arr, notes = decode_image(buf.getvalue())
    assert arr.shape == (32, 32, 3) and "2 frames" in notes[0]
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50  # the red first frame


def test_read_image_reports_missing_files_and_folders(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="folder"):
        read_image(tmp_path)


def test_quick_check_finds_zero_byte_truncated_and_fake_files(tmp_path):
    good = tmp_path / "good.jpeg"
    rgb_image().save(good)
    (tmp_path / "empty.jpeg").write_bytes(b"")
    (tmp_path / "cut.jpeg").write_bytes(good.read_bytes()[:-50])
    (tmp_path / "fake.jpeg").write_text("not a jpeg")
    assert quick_check(good) is None
    assert "empty" in quick_check(tmp_path / "empty.jpeg")
    assert "truncated" in quick_check(tmp_path / "cut.jpeg")
    assert "not an image" in quick_check(tmp_path / "fake.jpeg")


def test_a_tiff_whose_second_frame_is_broken_is_reported_not_raised():
    """Found by the fuzz test below: PIL raised TypeError while counting a damaged TIFF's frames."""
    import struct

    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * struct.unpack_from("<H", data, first)[0])[0]
    for i in range(struct.unpack_from("<H", data, second)[0]):
        if struct.unpack_from("<H", data, second + 2 + 12 * i)[0] == 256:  # ImageWidth of frame 2
            struct.pack_into("<H", data, second + 2 + 12 * i, 65000)  # -> an unknown tag
    with pytest.raises(ImageDecodeError, match="upload.tif: the image cannot be decoded"):
        decode_image(bytes(data), name="upload.tif")


SEED_IMAGES = [encode(rgb_image(), f) for f in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP")]


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.sampled_from(SEED_IMAGES), st.integers(0, 4000), st.binary(min_size=1, max_size=64))
    .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):]),  # real images with bytes overwritten
))
def test_fuzz_arbitrary_bytes_never_crash_the_decoder(data):
    try:
        arr, _ = decode_image(data)
    except ImageDecodeError as exc:
        assert str(exc)  # a message, never an empty error
    else:
        assert arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
