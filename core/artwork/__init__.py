"""Album art for track cards: the catalog cache, Spotify (oEmbed, then the Web API), or drawn.

:class:`ArtResolver` is the one entry point for the service; ``prefetch_art`` fills the cache
ahead of time for ``moodlift catalog art``.
"""

from core.artwork.guard import Guard, Pacer
from core.artwork.outcomes import ArtworkError, Found, NoArt, Unavailable
from core.artwork.prefetch import PrefetchReport, prefetch_art
from core.artwork.resolver import REPLY_DEADLINE, ArtResolver, Artwork

__all__ = [
    "REPLY_DEADLINE",
    "ArtResolver",
    "Artwork",
    "ArtworkError",
    "Found",
    "Guard",
    "NoArt",
    "Pacer",
    "PrefetchReport",
    "Unavailable",
    "prefetch_art",
]
