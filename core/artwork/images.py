"""Download album art as bytes the adapters can upload, and make sure it is a small picture.

Whatever the URL serves must say it is an image, stay under a byte limit, and open in Pillow
as a JPEG, PNG, WebP or GIF of sane dimensions; anything else is :class:`NoArt` (the URL is
then forgotten), never bytes passed on to a chat platform.
"""

from __future__ import annotations

import io
import warnings

import httpx
from PIL import Image

from core.artwork.http import check_status, read_limited, translated
from core.artwork.outcomes import NoArt
from core.replies import Picture

MAX_ART_BYTES = 2 * 1024 * 1024
MAX_SIDE = 4096
MIN_SIDE = 32
FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
UPSTREAM = "album art"


async def fetch_image(
    client: httpx.AsyncClient, url: str, *, max_bytes: int = MAX_ART_BYTES
) -> Picture:
    """The picture at ``url``, checked; :class:`NoArt` when it is not one we would send."""
    with translated(UPSTREAM):
        async with client.stream("GET", url) as response:
            check_status(UPSTREAM, response.status_code, response.headers)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not kind.startswith("image/"):
                raise NoArt(f"{UPSTREAM}: {kind or 'no content type'} is not an image")
            data = await read_limited(response, max_bytes, UPSTREAM, too_big=NoArt)
    kind, _ = check_image(data)
    return Picture(data, kind.lower())


def check_image(data: bytes) -> tuple[str, tuple[int, int]]:
    """The format and size read from the header; :class:`NoArt` unless it is a sane picture."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, size = image.format, image.size
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning):
        raise NoArt(f"{UPSTREAM}: not a picture Pillow can read") from None
    if kind not in FORMATS:
        raise NoArt(f"{UPSTREAM}: {kind} is not a format we send")
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise NoArt(f"{UPSTREAM}: {size[0]}x{size[1]} is not a card-sized picture")
    return str(kind), size
