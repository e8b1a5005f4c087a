"""Decode what users send into an upright 8-bit RGB array, safely and from memory only.

Photos come from strangers: the byte size and the pixel count are checked before anything is
decoded (a tiny file can claim 100,000 x 100,000 pixels), big JPEGs are decoded at a reduced
scale, and every way a file can be wrong ends in an :class:`ImageError` whose
``user_message`` can be shown as it is. Bytes are never written to disk.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from core.config import MAX_IMAGE_BYTES, MAX_PIXELS

log = logging.getLogger(__name__)


def silence_exif_warnings() -> None:
    """Pillow warns (on stderr) about a photo's damaged EXIF block; the photo is read all the
    same (its orientation ignored when unreadable), so there is nothing for anyone to act on.
    Installed on import (a warnings filter is process-wide)."""
    warnings.filterwarnings("ignore", message="(Corrupt EXIF data|Metadata Warning)", module="PIL")


silence_exif_warnings()

# iPhones save photos as HEIC; sent as a file (not as a Telegram photo) they arrive as such.
# libheif applies the photo's own rotation and refuses a picture bigger than its header says;
# an embedded thumbnail is never read in its place; one thread, like the rest of a worker.
pillow_heif.register_heif_opener(
    thumbnails=False, depth_images=False, aux_images=False, decode_threads=1
)

# Pillow's JPEG opener also yields MPO. Not AVIF: Pillow's reader decodes the AV1 stream at the
# size the stream declares, whatever the container's header (checked here) claims.
_OPENERS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF")

SUPPORTED_FORMATS: frozenset[str] = frozenset({"MPO", *_OPENERS})
"""Pillow format names we accept (MPO is what many phone cameras' JPEGs open as)."""
_PLEASE = "Please send it as a JPEG or PNG photo."
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE_FOR_ORIENTATION: dict[int, tuple[Image.Transpose, ...]] = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
# ISO-BMFF brands (bytes 8-12 of an "ftyp" box) of the HEIF family that phones send.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
# Magic numbers of other picture formats, so their senders hear "send a JPEG or PNG" rather
# than "not a picture".
_OTHER_PICTURES: tuple[tuple[bytes, str], ...] = (
    (b"8BPS", "Photoshop"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"gimp xcf", "GIMP"),
    (b"icns", "ICNS"),
    (b"<svg", "SVG"),
    (b"<!DOCTYPE svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"\x0a\x05\x01", "PCX"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
)


class ImageError(Exception):
    """A photo we cannot use; ``user_message`` is safe to show to the user."""

    user_message = "I couldn't read that picture. " + _PLEASE

    def __init__(self, detail: str, user_message: str | None = None) -> None:
        super().__init__(detail)
        if user_message is not None:
            self.user_message = user_message


class EmptyImage(ImageError):
    user_message = "That file is empty. " + _PLEASE


class NotAnImage(ImageError):
    user_message = "That doesn't look like a picture. " + _PLEASE


class UnsupportedFormat(ImageError):
    user_message = "I can't read that kind of picture yet. " + _PLEASE


class ImageTooLarge(ImageError):
    user_message = "That picture is too big for me. Please send a smaller photo."


class CorruptImage(ImageError):
    user_message = "That picture seems damaged or incomplete. Please send it again."


class ImageTooSmall(ImageError):
    user_message = (
        "That picture is too small (or too thin) to find a face in. Please send a bigger photo."
    )


@dataclass(frozen=True)
class ImageLimits:
    """What a photo may be; the defaults suit chat photos (Telegram sends <= 2560 px)."""

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_PIXELS  # width x height as the header claims
    min_side: int = 32
    max_aspect: float = 20.0  # longest side / shortest side
    working_side: int = 1280  # decoded photos are scaled so the longest side is at most this

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.min_side, self.working_side) <= 0:
            raise ValueError("image limits must be positive")
        if self.working_side < self.min_side or self.max_aspect < 1:
            raise ValueError("working_side must be >= min_side and max_aspect >= 1")


@dataclass(frozen=True)
class DecodedImage:
    """An upright photo at working size plus what is needed to map boxes back."""

    rgb: np.ndarray  # (H, W, 3) uint8, EXIF orientation applied, scaled to the working size
    format: str  # Pillow's format name, e.g. "JPEG"
    original_size: tuple[int, int]  # (width, height) of the upright photo as sent

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of :attr:`rgb`."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def to_original(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Map an (x, y, w, h) box in working pixels to the photo's own pixels, clipped."""
        sx = self.original_size[0] / self.size[0]
        sy = self.original_size[1] / self.size[1]
        x0 = max(0, round(box[0] * sx))
        y0 = max(0, round(box[1] * sy))
        x1 = min(self.original_size[0], round((box[0] + box[2]) * sx))
        y1 = min(self.original_size[1], round((box[1] + box[3]) * sy))
        return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def decode_image(data: bytes | bytearray | memoryview, limits: ImageLimits) -> DecodedImage:
    """Decode photo bytes into an upright RGB array at working size, or raise an ImageError."""
    size = len(data)
    if size == 0:
        raise EmptyImage("no bytes")
    if size > limits.max_bytes:
        raise ImageTooLarge(f"{size} bytes > {limits.max_bytes}")
    head = bytes(data[:32])
    if _is_avif(data):  # also one of brand "mif1" that the HEIF reader would take
        raise UnsupportedFormat("AVIF photo")
    try:
        # Only our formats' parsers see the bytes (Pillow knows ~40, e.g. EPS runs Ghostscript).
        image = Image.open(io.BytesIO(data), formats=_OPENERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise _unidentified(head) from None
    except Exception as exc:  # Pillow's header parsers raise many types on hostile input
        raise CorruptImage(f"unreadable header: {exc!r}") from None
    with image:
        return _decode_opened(image, limits)


def _is_avif(data: bytes | bytearray | memoryview) -> bool:
    """An ISO-BMFF file whose ``ftyp`` box names an AVIF brand, major or compatible."""
    if bytes(data[4:8]) != b"ftyp":
        return False
    size = min(int.from_bytes(bytes(data[:4]), "big"), 256, len(data))
    box = bytes(data[8:size])
    brands = [box[:4]] + [box[i : i + 4] for i in range(8, len(box) - 3, 4)]
    return any(brand in _AVIF_BRANDS for brand in brands)


def _unidentified(head: bytes) -> ImageError:
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:  # we read these: one no reader could open is a broken one
            return CorruptImage("unreadable HEIC photo")
        return UnsupportedFormat(f"ISO-BMFF file, brand {brand!r} (a video?)")
    # Markup may open with a byte-order mark, blank lines or a doctype.
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for magic, name in _OTHER_PICTURES:
        if head.startswith(magic) or (magic.startswith(b"<") and text.startswith(magic.lower())):
            return UnsupportedFormat(f"{name} file")
    if head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n":
        return UnsupportedFormat("PNM file")
    return NotAnImage(f"unknown file starting with {head[:8]!r}")


# Pillow's WebP decoder peaked at ~15 bytes a pixel (a 2 KB, 8000x8000 file took +981 MB), PNG
# at ~4 (+264 MB), and JPEG is decoded at reduced size: a WebP has its own, lower pixel limit,
# which still takes a 12 MP phone photo (~250 MB at the limit).
MAX_WEBP_PIXELS = 16_000_000


def _decode_opened(image: Image.Image, limits: ImageLimits) -> DecodedImage:
    fmt = image.format or "?"
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedFormat(f"format {fmt}")
    width, height = image.size
    max_pixels = min(limits.max_pixels, MAX_WEBP_PIXELS) if fmt == "WEBP" else limits.max_pixels
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels > {max_pixels} for {fmt}")
    if min(width, height) < limits.min_side:
        raise ImageTooSmall(f"{width}x{height} is smaller than {limits.min_side} px")
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ImageTooSmall(f"{width}x{height} is thinner than 1:{limits.max_aspect:g}")
    try:
        if fmt in {"JPEG", "MPO"}:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: 8x faster for a big photo.
            scale = _jpeg_scale(max(width, height), limits.working_side)
            if scale > 1:
                image.draft(None, (width // scale, height // scale))
        image.load()  # the first frame only
        orientation = _orientation(image)  # after load: Pillow already turns TIFFs upright
        rgb = _working_rgb(image, limits.working_side)
        for step in _TRANSPOSE_FOR_ORIENTATION.get(orientation, ()):
            rgb = rgb.transpose(step)
        pixels = np.asarray(rgb, dtype=np.uint8)
    except ImageError:
        raise
    except Exception as exc:  # truncated data, bad CRCs, broken streams: decoders vary
        raise CorruptImage(f"{fmt} decode failed: {exc!r}") from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    log.debug("decoded %s %dx%d -> %s", fmt, width, height, pixels.shape)
    return DecodedImage(pixels, fmt, (width, height))


def _jpeg_scale(side: int, working_side: int) -> int:
    """The largest of libjpeg's reductions (8, 4, 2) that keeps ``side`` >= ``working_side``.

    Pillow's ``draft`` takes a size and picks the reduction that each side divides into
    (``side // requested``); asking for ``side // scale`` gets exactly ``scale``. Asking for the
    rounded-up working size did not: a 1280x853 photo asked for 640x427, and 853 // 427 == 1
    meant a full decode (twice the time) for any odd side.
    """
    for scale in (8, 4, 2):
        if side >= scale * working_side:
            return scale
    return 1


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); absurd or unreadable EXIF counts as upright."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception as exc:  # malformed EXIF must not cost the user their photo
        log.debug("ignoring unreadable EXIF: %r", exc)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _working_rgb(image: Image.Image, side: int) -> Image.Image:
    """Any Pillow mode to 8-bit RGB with the longest side at most ``side``, shrinking first.

    A decoded photo is the one full-size copy we pay for: converting a 16 MP 16-bit PNG at full
    size cost ~600 MB of float64 and an RGBA one ~240 MB, for a picture kept at 1280 px. So the
    shrink (box-reduce by a whole factor, then bilinear) runs on the mode as decoded where
    averaging it is right (RGB, L, premultiplied alpha) and on strips of rows converted one at
    a time otherwise (palette, 1-bit, CMYK, 16-bit...), and transparency is composited on white
    only at working size.
    """
    width, height = image.size
    factor = side / max(width, height)
    whole = math.floor(1 / factor) if factor < 1 else 1
    convert = _linear_converter(image)
    if convert is None:
        small = image.reduce(whole) if whole >= 2 else image
    else:
        small = _convert_in_strips(image, convert, whole)
    if small.mode == "RGB" and factor >= 1:
        return small
    pixels = np.asarray(small)
    if factor < 1:
        # OpenCV's bilinear for the last step (a factor above 1/2): it differs from Pillow's
        # antialiased one by ~0.4 grey levels on average and is ~5x faster (a 1920 px photo
        # went from ~40 ms to ~8 ms here, the biggest cost of reading one).
        target = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = cv2.resize(pixels, target, interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(_on_white(pixels), "RGB")


def _linear_converter(image: Image.Image) -> Callable[[Image.Image], Image.Image] | None:
    """How to turn a strip of ``image`` into 8-bit L, RGB or premultiplied alpha, which can be
    averaged (so shrunk) and composited after; None when the mode already is one of those.

    Premultiplied (RGBa) because compositing on white is linear in it: averaging then adding
    white where alpha is missing equals compositing each pixel then averaging, while averaging
    plain RGBA would smear the colour of invisible pixels into the edges.
    """
    mode = image.mode
    if mode in {"I", "F"} or mode.startswith("I;16"):
        low, high = _finite_range(image) if mode in {"I", "F"} else (0.0, 0.0)
        return lambda strip: Image.fromarray(_high_depth_to_u8(np.asarray(strip), mode, low, high))
    if mode in {"RGB", "RGBa", "La"}:  # an RGB photo's transparent colour key is ignored
        return None
    if mode in {"RGBA", "LA", "PA"} or "transparency" in image.info:
        return _premultiplied
    if mode == "L":
        return None
    if mode == "1":
        return lambda strip: strip.convert("L")
    return lambda strip: strip.convert("RGB")  # palette, CMYK, YCbCr, LAB, HSV


def _premultiplied(strip: Image.Image) -> Image.Image:
    """RGBa, whatever kind of transparency the strip has (an alpha band, a palette's, a key)."""
    return (strip if strip.mode == "RGBA" else strip.convert("RGBA")).convert("RGBa")


_STRIP_PIXELS = 1 << 20
"""About how many pixels of a photo are converted at a time (a few MB whatever the mode)."""


def _strips(image: Image.Image, multiple: int) -> Iterator[tuple[int, Image.Image]]:
    """(top, strip) for bands of whole rows, ``multiple`` rows tall or a multiple of it."""
    width, height = image.size
    rows = max(1, _STRIP_PIXELS // (width * multiple)) * multiple
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(height, top + rows)))


def _convert_in_strips(
    image: Image.Image, convert: Callable[[Image.Image], Image.Image], whole: int
) -> Image.Image:
    """``convert(image).reduce(whole)`` without ever holding the whole converted image.

    The strips are a multiple of ``whole`` rows tall, so their reduced blocks are exactly the
    ones a reduction of the whole image would average.
    """
    width, height = image.size
    out: Image.Image | None = None
    for top, strip in _strips(image, whole):
        part = convert(strip)
        if whole >= 2:
            part = part.reduce(whole)
        if out is None:
            out = Image.new(part.mode, (-(-width // whole), -(-height // whole)))
        out.paste(part, (0, top // whole))
    assert out is not None  # a decoded image has at least one row
    return out


def _finite_range(image: Image.Image) -> tuple[float, float]:
    """The lowest and highest finite value of a 32-bit integer or float image, strip by strip."""
    low, high = math.inf, -math.inf
    for _, strip in _strips(image, 1):
        values = np.asarray(strip)
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
    return (low, high) if low <= high else (0.0, 0.0)


def _high_depth_to_u8(values: np.ndarray, mode: str, low: float, high: float) -> np.ndarray:
    """16-bit, 32-bit integer or float gray to uint8 by the range the whole image evidently uses
    (``low``/``high``: its finite extremes, unused for 16-bit)."""
    scaled = values.astype(np.float32)  # the one copy; the rest is in place
    if mode.startswith("I;16"):
        scaled /= 257.0
    elif mode == "F" and low >= 0 and high <= 1.0:
        scaled *= 255.0
    elif low >= 0 and high <= 255:
        pass
    elif mode == "I" and low >= 0 and high <= 65535:
        scaled /= 257.0
    else:  # unusual ranges: stretch what is there
        scaled -= low
        scaled *= 255.0 / max(high - low, 1e-12)
    np.nan_to_num(scaled, copy=False)
    scaled += 0.5
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def _on_white(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from L, RGB or premultiplied La/RGBa pixels, alpha over white."""
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    channels = pixels.shape[2]
    if channels in (2, 4):
        # Premultiplied: a colour c at opacity a is stored as c*a; over white it shows as
        # c*a + 255*(1 - a), i.e. the stored value plus 255 minus the alpha.
        # (Rounding can leave a premultiplied value above its alpha: the minimum caps it.)
        alpha = pixels[..., -1:]
        colour = np.minimum(pixels[..., :-1], alpha)
        np.subtract(alpha, colour, out=colour)
        np.subtract(255, colour, out=colour)
        pixels = colour
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels
