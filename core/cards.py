"""A drawn track card: the picture we send when no album art can be had.

Always available offline: the mood's colour as a soft gradient, the title and artist in
large type, the mood as a badge. 640x640 PNG, crisp on phones.
"""

from __future__ import annotations

import io
import textwrap

from PIL import Image, ImageDraw

from core.fonts import font as _font
from core.palette import MOOD_COLOURS

SIZE = 640


def _gradient(colour: tuple[int, int, int]) -> Image.Image:
    top = tuple(min(255, int(c * 0.55 + 255 * 0.45)) for c in colour)
    bottom = tuple(int(c * 0.55) for c in colour)
    column = Image.new("RGB", (1, SIZE))
    for y in range(SIZE):
        t = y / (SIZE - 1)
        column.putpixel(
            (0, y), tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        )
    return column.resize((SIZE, SIZE))


def _fit_lines(text: str, width_chars: int, max_lines: int) -> list[str]:
    lines = textwrap.wrap(text, width=width_chars) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width_chars - 1)].rstrip() + "…"
    return lines


def draw_card(title: str, artist: str, mood: str) -> bytes:
    """PNG bytes of a 640x640 card for ``title`` by ``artist`` in ``mood``'s colour."""
    colour = MOOD_COLOURS.get(mood, (90, 110, 200))
    image = _gradient(colour)
    draw = ImageDraw.Draw(image)
    # A record, as a quiet hint of what the card is about.
    cx, cy, r = SIZE - 150, 170, 120
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(24, 24, 28))
    for ring in range(30, r, 14):
        draw.ellipse((cx - ring, cy - ring, cx + ring, cy + ring), outline=(48, 48, 56), width=2)
    draw.ellipse((cx - 34, cy - 34, cx + 34, cy + 34), fill=colour)
    draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=(24, 24, 28))

    title_font, artist_font, badge_font = _font(52), _font(34), _font(26)
    y = 330
    for line in _fit_lines(title, 20, 3):
        draw.text((48, y), line, fill=(255, 255, 255), font=title_font)
        y += 62
    for line in _fit_lines(artist, 28, 2):
        draw.text((48, y + 8), line, fill=(245, 245, 250), font=artist_font)
        y += 42
    badge = mood.upper()
    left, top, right, bottom = draw.textbbox((0, 0), badge, font=badge_font)
    width = right - left + 36
    draw.rounded_rectangle((48, 48, 48 + width, 48 + 48), radius=24, fill=(255, 255, 255))
    draw.text((66, 48 + (48 - (bottom - top)) // 2 - top), badge, fill=colour, font=badge_font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
