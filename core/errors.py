"""The errors we raise on purpose.

Core code raises these; the edges (CLI, Telegram, Discord) translate them into one clear line
or a friendly reply. Anything else that escapes is a bug and is logged with its traceback.
"""

from __future__ import annotations

from models.errors import ModelFileError

__all__ = [
    "CatalogEmpty",
    "CatalogError",
    "ConfigError",
    "ModelFileError",  # raised by models/ (which cannot import core); the edges catch it here
    "MoodLiftError",
    "NotYourTrack",
    "StoreError",
    "UnknownEmotion",
    "UnknownMode",
    "UnknownMood",
    "UnknownUser",
]


class MoodLiftError(Exception):
    """Base of every error the application raises on purpose."""


class ConfigError(MoodLiftError):
    """A setting is missing, malformed or unknown; the message names the key."""


class StoreError(MoodLiftError):
    """The database cannot do what was asked (unreachable, schema too old, ...)."""


class UnknownUser(StoreError):
    """A user id that is not (or no longer) in the store."""


class NotYourTrack(StoreError):
    """A rating for a track the user was never sent (a forged button, or someone else's card)."""


class CatalogError(MoodLiftError):
    """A catalog source cannot be fetched or read."""


class CatalogEmpty(CatalogError):
    """No track of the wanted mood can be served (nothing imported, or no mood assigned yet)."""

    def __init__(self, mood: str) -> None:
        super().__init__(
            f"the catalog has no {mood} tracks to serve; run `moodlift catalog import` first"
        )
        self.mood = mood


class UnknownEmotion(MoodLiftError, ValueError):
    """An emotion name outside the seven FER2013 classes."""


class UnknownMood(MoodLiftError, ValueError):
    """A mood name outside calm, happy, energetic, sad."""


class UnknownMode(MoodLiftError, ValueError):
    """A recommendation mode other than lift or match."""
