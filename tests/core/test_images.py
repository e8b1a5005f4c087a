"""Safe decoding of what users send: every format and mode, EXIF, limits, broken files."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from skimage import data

from core.images import (
    MAX_WEBP_PIXELS,
    CorruptImage,
    DecodedImage,
    EmptyImage,
    ImageError,
    ImageLimits,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    UnsupportedFormat,
    decode_image,
    silence_exif_warnings,
)

LIMITS = ImageLimits()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def gray_mean(decoded: DecodedImage) -> float:
    weights = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as JPEG and FER2013 use
    return float((decoded.rgb @ weights).mean())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF"])
def test_each_supported_format_decodes_to_rgb(astronaut: Image.Image, fmt: str) -> None:
    decoded = decode_image(encode(astronaut, fmt), LIMITS)
    assert decoded.rgb.shape == (512, 512, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.format == fmt
    assert decoded.original_size == decoded.size == (512, 512)
    reference = np.asarray(astronaut.convert("L"), dtype=np.float64).mean()
    assert abs(gray_mean(decoded) - reference) < 4


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("L", "PNG"),
        ("1", "PNG"),
        ("P", "PNG"),
        ("LA", "PNG"),
        ("RGBA", "PNG"),
        ("RGBA", "WEBP"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("I", "TIFF"),
        ("F", "TIFF"),
        ("PA", "TIFF"),
        ("YCbCr", "JPEG"),
    ],
)
def test_every_mode_becomes_8_bit_rgb(astronaut: Image.Image, mode: str, fmt: str) -> None:
    payload = encode(astronaut.convert(mode), fmt)
    with Image.open(io.BytesIO(payload)) as opened:
        assert opened.mode in {mode, "RGB", "L"}  # what the file really holds
    decoded = decode_image(payload, LIMITS)
    assert decoded.rgb.shape == (512, 512, 3) and decoded.rgb.dtype == np.uint8
    reference = np.asarray(astronaut.convert("L"), dtype=np.float64).mean()
    assert abs(gray_mean(decoded) - reference) < 6


def test_16_bit_png_is_scaled_not_clipped(astronaut: Image.Image) -> None:
    gray = np.asarray(astronaut.convert("L"), dtype=np.uint16)
    payload = encode(Image.fromarray(gray * 257), "PNG")
    with Image.open(io.BytesIO(payload)) as opened:
        assert opened.mode.startswith("I")
    decoded = decode_image(payload, LIMITS)
    assert np.abs(decoded.rgb[..., 0].astype(int) - gray).max() <= 1


def test_48_bit_png_decodes() -> None:
    rgb16 = (data.astronaut().astype(np.uint16) * 257).astype(">u2")
    header = struct.pack(">IIBBBBB", 512, 512, 16, 2, 0, 0, 0)
    raw = b"".join(b"\0" + row.tobytes() for row in rgb16)
    payload = _png_bytes(header, zlib.compress(raw))
    decoded = decode_image(payload, LIMITS)
    assert np.abs(decoded.rgb.astype(int) - data.astronaut()).max() <= 1


def test_transparency_is_composited_on_white() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black
    rgba[:32, :, 3] = 255  # top half opaque black
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), LIMITS)
    assert decoded.rgb[:32].max() == 0
    assert decoded.rgb[32:].min() == 255


def test_palette_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.paste(0, (0, 0, 64, 32))
    payload = encode(image, "GIF", transparency=0)
    decoded = decode_image(payload, LIMITS)
    assert decoded.rgb[:32].min() == 255
    assert tuple(decoded.rgb[40, 10]) == (10, 20, 30)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (64, 64), color) for color in ((200, 0, 0), (0, 0, 200))]
    payload = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    decoded = decode_image(payload, LIMITS)
    assert decoded.rgb[..., 0].mean() > 150 and decoded.rgb[..., 2].mean() < 50


def _upright() -> Image.Image:
    """A 90x60 picture whose top-left block is red and top-right block green."""
    pixels = np.full((60, 90, 3), 128, np.uint8)
    pixels[:20, :30] = (255, 0, 0)
    pixels[:20, -30:] = (0, 255, 0)
    return Image.fromarray(pixels)


# Stored pixels for each orientation: what a camera would write so that applying the EXIF
# orientation shows the upright picture again.
_STORE = {
    1: (),
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_90,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_270,),
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, fmt: str) -> None:
    stored = _upright()
    for step in _STORE[orientation]:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95} if fmt == "JPEG" else {}
    decoded = decode_image(encode(stored, fmt, exif=exif.tobytes(), **options), LIMITS)
    assert decoded.original_size == (90, 60)
    assert decoded.rgb.shape == (60, 90, 3)
    red, green = decoded.rgb[10, 15].astype(int), decoded.rgb[10, -15].astype(int)
    assert red[0] > 200 and red[1] < 60, f"top-left is {red}"
    assert green[1] > 200 and green[0] < 60, f"top-right is {green}"


def test_a_damaged_exif_block_is_read_past_without_a_warning(astronaut: Image.Image) -> None:
    """Pillow warns on stderr about it ("Corrupt EXIF data"); nobody can act on that."""
    app1 = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + b"\xff" * 40  # an IFD of garbage
    segment = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    jpeg = encode(astronaut, "JPEG")
    with warnings.catch_warnings(record=True) as caught:
        # core.images installs this on import; pytest has since reset the filters for each test.
        silence_exif_warnings()
        decoded = decode_image(jpeg[:2] + segment + jpeg[2:], LIMITS)
    assert decoded.original_size == astronaut.size
    assert not [w for w in caught if "EXIF" in str(w.message) or "Metadata" in str(w.message)]


@pytest.mark.parametrize("value", [0, 9, 65535])
def test_absurd_exif_orientation_counts_as_upright(value: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    decoded = decode_image(encode(_upright(), "JPEG", exif=exif.tobytes()), LIMITS)
    assert decoded.rgb.shape == (60, 90, 3)


def test_garbage_exif_block_is_ignored() -> None:
    payload = encode(_upright(), "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff" + b"\x13" * 40)
    assert decode_image(payload, LIMITS).rgb.shape == (60, 90, 3)


def _record_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, int]]]:
    """Spy on Pillow's pixel decoding: (format, size) of each call to ``ImageFile.load``."""
    loads: list[tuple[str, tuple[int, int]]] = []
    original = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        pixels = original(self)
        loads.append((self.format or "?", self.size))
        return pixels

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return loads


def test_big_jpeg_is_decoded_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    # libjpeg decodes a 4000x3000 photo at 1/2 scale (a quarter of the pixels and the work).
    big = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BILINEAR)
    payload = encode(big, "JPEG", quality=90)
    loads = _record_loads(monkeypatch)
    decoded = decode_image(payload, LIMITS)
    assert loads and set(loads) == {("JPEG", (2000, 1500))}  # never the full 4000x3000
    assert max(decoded.size) <= LIMITS.working_side and decoded.size == (1280, 960)
    assert decoded.original_size == (4000, 3000)
    assert decoded.to_original((128, 96, 128, 96)) == (400, 300, 400, 300)


def test_big_png_is_scaled_to_working_size() -> None:
    big = Image.fromarray(data.astronaut()).resize((2048, 1536))
    decoded = decode_image(encode(big, "PNG"), LIMITS)
    assert decoded.size == (1280, 960) and decoded.original_size == (2048, 1536)


def _big_16_bit_gray() -> tuple[Image.Image, Callable[[DecodedImage], None]]:
    """4000x4000 16-bit grey rising from black on the left to white on the right."""
    ramp = np.linspace(0, 65535, 4000).round().astype(np.uint16)
    image = Image.fromarray(np.broadcast_to(ramp, (4000, 4000)).copy())
    assert image.mode.startswith("I;16")

    def check(decoded: DecodedImage) -> None:
        rgb = decoded.rgb.astype(int)
        assert (rgb == rgb[..., :1]).all()  # grey
        assert np.abs(rgb - rgb[:1]).max() <= 1  # every row alike (bilinear rounds by row)
        columns = (np.arange(1280) + 0.5) * 4000 / 1280 - 0.5  # where each one sits in the file
        assert np.abs(rgb[0, :, 0] - columns / 3999 * 255).max() <= 2

    return image, check


def _big_rgba() -> tuple[Image.Image, Callable[[DecodedImage], None]]:
    """4000x4000 stripes one pixel wide, alternately opaque black and fully transparent green.

    On white that is black and white stripes, shrunk to an even grey: averaging the pixels
    before compositing, without weighting by alpha, would tint it with the invisible green.
    """
    rgba = np.zeros((4000, 4000, 4), np.uint8)
    rgba[:, 0::2, 3] = 255
    rgba[:, 1::2, 1] = 255
    image = Image.fromarray(rgba, "RGBA")

    def check(decoded: DecodedImage) -> None:
        rgb = decoded.rgb.astype(int)
        assert np.abs(rgb[..., 1] - rgb[..., 0]).max() <= 2 and (rgb[..., 2] == rgb[..., 0]).all()
        assert abs(rgb.mean() - 127.5) < 2

    return image, check


def _peak_rss_growth_mb(run: Callable[[], object]) -> float | None:
    """How far ``run`` raised the process's peak resident memory, in MB (None off Linux).

    Pillow allocates pixels with plain malloc, which tracemalloc does not see; writing 5 to
    ``/proc/self/clear_refs`` resets the kernel's peak (VmHWM) to the current RSS.
    """
    status = Path("/proc/self/status")

    def read(field: str) -> float:
        line = next(x for x in status.read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1]) / 1024

    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = read("VmRSS")
    except (OSError, StopIteration):
        return None
    run()
    return read("VmHWM") - before


@pytest.mark.parametrize(
    ("make", "decoded_mb"),
    [(_big_16_bit_gray, 32), (_big_rgba, 64)],  # what Pillow holds once it has decoded the file
    ids=["16-bit-gray", "rgba"],
)
def test_big_png_is_shrunk_before_its_colours_are_converted(
    make: Callable[[], tuple[Image.Image, Callable[[DecodedImage], None]]],
    decoded_mb: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Converting at full size cost 610 MB of numpy float64 (16 MP of 16-bit grey) and ~240 MB
    # of Pillow images (RGBA composited on white) for a picture kept at 1280 px.
    image, check = make()
    payload = encode(image, "PNG", compress_level=1)
    del image
    converted: list[tuple[str, int]] = []
    convert = Image.Image.convert

    def spy(self: Image.Image, mode: str | None = None, *args: object, **kwargs: object) -> object:
        converted.append((self.mode, self.width * self.height))
        return convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", spy)
    tracemalloc.start()
    try:
        decoded = decode_image(payload, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.size == (1280, 1280) and decoded.original_size == (4000, 4000)
    check(decoded)
    assert peak < 40 * 2**20, f"numpy peaked at {peak / 2**20:.0f} MB"
    assert max((pixels for _, pixels in converted), default=0) <= 2**21, converted
    # A backstop for Pillow's own buffers, which neither check above sees whole: it can only
    # under-read (memory freed earlier in this process may still be resident), never over.
    growth = _peak_rss_growth_mb(lambda: decode_image(payload, LIMITS))
    if growth is not None:
        assert growth < decoded_mb + 64, f"peak memory grew by {growth:.0f} MB"


def test_empty_bytes() -> None:
    with pytest.raises(EmptyImage):
        decode_image(b"", LIMITS)


def test_text_renamed_jpg() -> None:
    with pytest.raises(NotAnImage):
        decode_image("Hello! This is not a selfie. Привет".encode() * 10, LIMITS)


def test_heic_is_read_upright_as_the_phone_saved_it(astronaut: Image.Image) -> None:
    """iPhones store a portrait photo sideways with a rotation property; libheif applies it."""
    upright = astronaut.crop((0, 0, 512, 300))
    orientation = Image.Exif()
    orientation[0x0112] = 6  # pillow-heif writes this as the HEIF rotation property
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    decoded = decode_image(encode(stored, "HEIF", exif=orientation.tobytes(), quality=90), LIMITS)
    assert decoded.format == "HEIF" and decoded.original_size == (512, 300)
    difference = np.abs(decoded.rgb.astype(int) - np.asarray(upright, dtype=int))
    assert difference.mean() < 4


@pytest.mark.parametrize("brand", [b"heic", b"mif1"])
def test_a_heic_no_reader_can_open_is_damaged(brand: bytes) -> None:
    box = struct.pack(">I", 24) + b"ftyp" + brand + b"\0\0\0\0" + brand + b"mif1"
    with pytest.raises(CorruptImage) as caught:
        decode_image(box + b"\0" * 200, LIMITS)
    assert "damaged" in caught.value.user_message


def test_truncated_heic_is_damaged(astronaut: Image.Image) -> None:
    payload = encode(astronaut, "HEIF")
    for cut in (len(payload) // 2, 64):
        with pytest.raises(CorruptImage):
            decode_image(payload[:cut], LIMITS)


@pytest.mark.parametrize("major", [b"avif", b"mif1"])
def test_avif_is_refused_before_any_reader_sees_it(astronaut: Image.Image, major: bytes) -> None:
    """Pillow reads AVIF, but decodes the AV1 stream at whatever size it declares, past the
    pixel limit checked on the container's header; an AVIF may also carry the HEIF family's
    generic brand "mif1" as its major one (then only its compatible brands say AVIF)."""
    try:
        payload = encode(astronaut, "AVIF")
    except (KeyError, OSError):
        pytest.skip("this Pillow cannot write AVIF")
    major_at = payload.index(b"ftyp") + 4
    payload = payload[:major_at] + major + payload[major_at + 4 :]
    with pytest.raises(UnsupportedFormat) as caught:
        decode_image(payload, LIMITS)
    assert "AVIF" in str(caught.value) and "JPEG or PNG" in caught.value.user_message


def test_video_container_is_refused() -> None:
    box = struct.pack(">I", 20) + b"ftypisom" + b"\0\0\x02\0" + b"isom"
    with pytest.raises(UnsupportedFormat):
        decode_image(box + b"\0" * 500, LIMITS)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "PCX", "PDF", "EPS", "JPEG2000", "QOI", "PSD"])
def test_other_picture_formats_ask_for_jpeg_or_png(astronaut: Image.Image, fmt: str) -> None:
    image = astronaut.resize((128, 128)) if fmt == "ICO" else astronaut
    try:
        payload = encode(image, fmt)
    except (KeyError, OSError):
        if fmt != "PSD":
            raise
        payload = b"8BPS\x00\x01" + b"\x00" * 100  # Pillow reads PSD but cannot write it
    with pytest.raises(UnsupportedFormat) as caught:
        decode_image(payload, LIMITS)
    assert "JPEG or PNG" in caught.value.user_message


@pytest.mark.parametrize(
    "opening",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg">',
        b'\xef\xbb\xbf<?xml version="1.0"?><svg>',  # a byte-order mark
        b'\n\n  <svg width="10">',  # blank lines first
        b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"><svg>',
    ],
)
def test_a_drawing_in_svg_asks_for_jpeg_or_png(opening: bytes) -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        decode_image(opening + b"<circle r='4'/></svg>", LIMITS)
    assert "JPEG or PNG" in caught.value.user_message


def test_formats_without_a_magic_number_are_not_pictures_to_us(astronaut: Image.Image) -> None:
    with pytest.raises((NotAnImage, UnsupportedFormat)):
        decode_image(encode(astronaut, "TGA"), LIMITS)


def test_too_many_bytes_refused_before_decoding(astronaut: Image.Image) -> None:
    payload = encode(astronaut, "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(payload, ImageLimits(max_bytes=len(payload) - 1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_truncated_files(astronaut: Image.Image, fmt: str) -> None:
    payload = encode(astronaut, fmt)
    with pytest.raises((CorruptImage, NotAnImage)):
        decode_image(payload[: len(payload) // 2], LIMITS)


def test_jpeg_cut_after_its_header() -> None:
    payload = encode(Image.fromarray(data.astronaut()), "JPEG")
    with pytest.raises(CorruptImage):
        decode_image(payload[:700], LIMITS)


def test_png_with_a_bad_crc(astronaut: Image.Image) -> None:
    payload = bytearray(encode(astronaut, "PNG"))
    idat = payload.index(b"IDAT")
    payload[idat + 50] ^= 0xFF  # corrupt the data; the stored CRC no longer matches
    with pytest.raises(CorruptImage):
        decode_image(bytes(payload), LIMITS)


def test_random_bytes_after_a_jpeg_marker() -> None:
    junk = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises((CorruptImage, NotAnImage)):
        decode_image(b"\xff\xd8\xff\xe0" + junk, LIMITS)


def _png_bytes(ihdr: bytes, idat: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_decompression_bomb_png_refused_from_its_header(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A few hundred bytes that claim side x side pixels (10 GB for 100,000 x 100,000 RGB); the
    # pixel data is not even zlib, so only a refusal from the header can be ImageTooLarge.
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    payload = _png_bytes(ihdr, b"not zlib" * 50)
    assert len(payload) < 1000
    loads = _record_loads(monkeypatch)
    with pytest.raises(ImageTooLarge):
        decode_image(payload, LIMITS)
    assert loads == []  # not a pixel decoded


def test_decompression_bomb_gif_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    gif = bytearray(encode(Image.new("P", (64, 64)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen
    loads = _record_loads(monkeypatch)
    with pytest.raises(ImageTooLarge):
        decode_image(bytes(gif), LIMITS)
    assert loads == []


def test_a_webp_is_held_to_a_lower_pixel_limit_for_its_costlier_decoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2 KB lossless WebP of 8000 x 8000 took ~1 GB to decode (PNG: ~0.26 GB): a WebP over
    its own limit is refused from its header; a PNG of that size is read, and a WebP within it."""
    from core import images

    monkeypatch.setattr(images, "MAX_WEBP_PIXELS", 1_000_000)
    big = Image.new("RGB", (1200, 1200), "grey")  # 1.44 MP
    loads = _record_loads(monkeypatch)
    with pytest.raises(ImageTooLarge):
        decode_image(encode(big, "WEBP"), LIMITS)
    assert loads == []
    assert decode_image(encode(big, "PNG"), LIMITS).original_size == (1200, 1200)
    assert decode_image(encode(big.resize((900, 900)), "WEBP"), LIMITS).format == "WEBP"


def test_a_phone_photo_as_webp_is_within_its_limit() -> None:
    assert MAX_WEBP_PIXELS >= 4032 * 3024  # 12 MP


def test_pixel_limit_is_a_parameter(astronaut: Image.Image) -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(encode(astronaut, "PNG"), ImageLimits(max_pixels=512 * 511))


@pytest.mark.parametrize("size", [(1, 1), (20, 20), (20_000, 20), (20, 2_000)])
def test_tiny_and_strip_images_are_too_small(size: tuple[int, int]) -> None:
    with pytest.raises(ImageTooSmall):
        decode_image(encode(Image.new("RGB", size, "white"), "PNG"), LIMITS)


def test_every_error_has_a_friendly_message() -> None:
    for kind in (
        EmptyImage,
        NotAnImage,
        UnsupportedFormat,
        ImageTooLarge,
        CorruptImage,
        ImageTooSmall,
    ):
        error = kind("technical detail")
        assert isinstance(error, ImageError)
        assert error.user_message and "technical" not in error.user_message
        assert str(error) == "technical detail"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        ImageLimits(max_bytes=0)


def test_accepts_bytearray_and_memoryview(astronaut: Image.Image) -> None:
    payload = encode(astronaut, "JPEG")
    assert decode_image(bytearray(payload), LIMITS).size == (512, 512)
    assert decode_image(memoryview(payload), LIMITS).size == (512, 512)
