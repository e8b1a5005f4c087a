"""Spotify's oEmbed endpoint: a track's thumbnail and title, no key needed."""

from __future__ import annotations

import httpx

from core.artwork.guard import Guard, Pacer
from core.artwork.http import get_json, is_http_url
from core.artwork.outcomes import Found, NoArt

MAX_JSON_BYTES = 64 * 1024


def track_url(track_id: str) -> str:
    return f"https://open.spotify.com/track/{track_id}"


class OEmbed:
    """``GET {url}?url=https://open.spotify.com/track/<id>`` → ``thumbnail_url``, ``title``."""

    name = "oembed"

    def __init__(
        self, client: httpx.AsyncClient, url: str, guard: Guard, pace: Pacer | None = None
    ) -> None:
        self.client = client
        self.url = url
        self.guard = guard
        self.pace = pace

    async def find(self, track_id: str) -> Found:
        """The art for ``track_id``; raises :class:`NoArt` or an :class:`Unavailable`."""
        return await self.guard.call(lambda: self._ask(track_id), self.pace)

    async def _ask(self, track_id: str) -> Found:
        data = await get_json(
            self.client, self.name, self.url, {"url": track_url(track_id)}, MAX_JSON_BYTES
        )
        thumbnail = data.get("thumbnail_url")
        if not is_http_url(thumbnail):
            raise NoArt(f"{self.name}: no thumbnail for {track_id}")
        title = data.get("title")
        return Found(str(thumbnail), self.name, title=title if isinstance(title, str) else None)
