"""What asking for a track's art can come to: found, none there, or not now.

The difference matters for the cache: "none there" (a 404, an answer without an image, a URL
that serves no picture) is remembered for a while; "not now" (a timeout, a 5xx, a 429, an
upstream we are staying away from) is never remembered, so the next request may try again.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import MoodLiftError


@dataclass(frozen=True)
class Found:
    """Art for a track, with whatever metadata the upstream gave along."""

    art_url: str
    source: str  # "catalog" | "oembed" | "webapi"
    title: str | None = None
    artist: str | None = None
    album: str | None = None


class ArtworkError(MoodLiftError):
    """No remote art this time; the drawn card stands in."""


class NoArt(ArtworkError):
    """The upstream is fine and says there is no art (cached as such for a while)."""


class Unavailable(ArtworkError):
    """Not now: the answer may differ later, so nothing is cached."""


class Failed(Unavailable):
    """A timeout, a connection error, a 5xx or a malformed answer: counts against the breaker."""


class RateLimited(Unavailable):
    """A 429; the upstream is left alone for ``retry_after`` seconds (None: not said)."""

    def __init__(self, upstream: str, retry_after: float | None) -> None:
        shown = "unspecified" if retry_after is None else f"{retry_after:.0f} s"
        super().__init__(f"{upstream}: rate limited (Retry-After {shown})")
        self.retry_after = retry_after


class Blocked(Unavailable):
    """Not asked at all: the upstream is cooling down or its breaker is open."""
