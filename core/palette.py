"""The colours of each music mood, shared by every picture the bot draws."""

from __future__ import annotations

MOOD_COLOURS: dict[str, tuple[int, int, int]] = {
    "calm": (72, 142, 196),
    "happy": (242, 178, 48),
    "energetic": (226, 72, 72),
    "sad": (104, 96, 168),
}
_NO_MOOD_COLOUR = (90, 110, 200)


def mood_colour(mood: str) -> tuple[int, int, int]:
    """The mood's colour; a calm blue for a mood without one (none today: a safe default)."""
    return MOOD_COLOURS.get(mood, _NO_MOOD_COLOUR)
