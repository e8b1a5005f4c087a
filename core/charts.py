"""A small bar chart of the seven emotion probabilities, drawn with Pillow for /mood."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from core.fonts import font as _font
from core.palette import mood_colour
from core.percents import whole_percents

WIDTH, ROW, PAD = 640, 54, 24


def emotion_chart(probabilities: dict[str, float], highlight: str, mood: str) -> bytes:
    """PNG bytes: one labelled bar per emotion, the detected one in the mood's colour."""
    names = list(probabilities)
    shown = whole_percents(probabilities)  # they add up to 100, as in /mood's text
    height = PAD * 2 + ROW * len(names) + 40
    image = Image.new("RGB", (WIDTH, height), (250, 250, 252))
    draw = ImageDraw.Draw(image)
    title_font, label_font = _font(26), _font(22)
    draw.text((PAD, PAD - 6), "What I read in your face", fill=(40, 40, 48), font=title_font)
    accent = mood_colour(mood)
    bar_left = PAD + 130
    bar_span = WIDTH - bar_left - PAD - 80
    for i, name in enumerate(names):
        top = PAD + 40 + i * ROW
        p = max(0.0, min(1.0, float(probabilities[name])))
        colour = accent if name == highlight else (190, 194, 204)
        draw.text((PAD, top + 10), name, fill=(40, 40, 48), font=label_font)
        draw.rounded_rectangle(
            (bar_left, top + 8, bar_left + bar_span, top + ROW - 14), radius=8, fill=(232, 234, 240)
        )
        if p > 0:
            right = bar_left + max(16, int(bar_span * p))
            draw.rounded_rectangle(
                (bar_left, top + 8, right, top + ROW - 14), radius=8, fill=colour
            )
        draw.text(
            (bar_left + bar_span + 10, top + 10),
            f"{shown[name]}%",
            fill=(40, 40, 48),
            font=label_font,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
