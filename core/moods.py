"""Emotion → music mood, in one place.

Two policies:

* ``lift`` (the default, the seed project's policy) steers toward a better mood: angry, disgust
  and fear get something calm; surprise gets energy; happy and neutral get happy; sad stays sad
  (the seed's choice: a sad song first, as company, rather than forced cheer).
* ``match`` stays with the feeling. The choice follows the catalog's own profiles (mean valence /
  energy in ``data_moods.csv``: sad 0.29/0.39, calm 0.15/0.16, energetic 0.44/0.88,
  happy 0.58/0.75): anger is a high-energy feeling → energetic; disgust is low valence at moderate
  energy → sad; fear is dark and tense → calm (the catalog's "calm" tracks are its darkest, lowest
  valence ones); surprise → energetic; happy → happy; neutral → calm; sad → sad.
"""

from __future__ import annotations

import enum

from core.errors import UnknownEmotion, UnknownMode, UnknownMood
from data.fer2013 import EMOTIONS  # the seven FER2013 classes, in label order

# The song moods in the order the bot lists them (data.music.MOODS holds them as the song-mood
# model labels them, sorted).
MOODS: tuple[str, ...] = ("calm", "happy", "energetic", "sad")


class Mode(enum.StrEnum):
    """How a user wants the song to relate to their face."""

    LIFT = "lift"
    MATCH = "match"


_POLICY: dict[Mode, dict[str, str]] = {
    Mode.LIFT: {
        "angry": "calm",
        "disgust": "calm",
        "fear": "calm",
        "happy": "happy",
        "sad": "sad",
        "surprise": "energetic",
        "neutral": "happy",
    },
    Mode.MATCH: {
        "angry": "energetic",
        "disgust": "sad",
        "fear": "calm",
        "happy": "happy",
        "sad": "sad",
        "surprise": "energetic",
        "neutral": "calm",
    },
}

_LOOKS: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgusted",
    "fear": "worried",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "relaxed",
}


def check_emotion(emotion: str) -> str:
    """The canonical (lower-case) emotion name, or :class:`UnknownEmotion`."""
    name = emotion.strip().lower()
    if name not in EMOTIONS:
        raise UnknownEmotion(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    return name


def check_mood(mood: str) -> str:
    """The canonical (lower-case) mood name, or :class:`UnknownMood`."""
    name = mood.strip().lower()
    if name not in MOODS:
        raise UnknownMood(f"unknown mood {mood!r}; expected one of {', '.join(MOODS)}")
    return name


def parse_mode(mode: str | Mode) -> Mode:
    """A :class:`Mode` from its name, or :class:`UnknownMode`."""
    try:
        return Mode(str(mode).strip().lower())
    except ValueError:
        raise UnknownMode(f"unknown mode {mode!r}; expected lift or match") from None


def mood_for(emotion: str, mode: Mode | str = Mode.LIFT) -> str:
    """The music mood to answer ``emotion`` with under ``mode``."""
    return _POLICY[parse_mode(mode)][check_emotion(emotion)]


def looks(emotion: str) -> str:
    """How a face with ``emotion`` looks, as an adjective: "disgust" → "disgusted"."""
    return _LOOKS[check_emotion(emotion)]


def reason(emotion: str, mood: str) -> str:
    """One line a person reads under the song, e.g. "you look sad — here is something calm".

    A sad song for a sad face says why (in lift mode too, by the seed's choice): "here is
    something sad" alone reads as if the bot had not tried to lift anything.
    """
    if check_emotion(emotion) == "sad" and check_mood(mood) == "sad":
        return "you look sad — here is a sad song to keep you company"
    return f"you look {looks(emotion)} — here is something {check_mood(mood)}"
