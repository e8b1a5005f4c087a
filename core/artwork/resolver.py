"""Album art for a card, fast or not at all: catalog cache → oEmbed → Web API → a drawn card.

Built once at start-up (it owns one HTTP client and the Web API's threads) and closed at
shutdown. What a lookup learns is written to the store (``tracks.art_url`` and
``art_checked_at``), so each track is looked up once; "no art" is remembered for
``no_art_ttl``. Image bytes (and drawn cards) are kept in a small in-memory LRU keyed by URL
(tracks of one album share it).

A reply never waits on art longer than ``deadline``: a lookup still running then goes on in
the background (shared by everyone asking for the same track) and its answer is cached for
the next time, while this reply gets the drawn card.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from core.artwork.guard import Guard, Pacer
from core.artwork.images import fetch_image
from core.artwork.oembed import OEmbed
from core.artwork.outcomes import ArtworkError, Found, NoArt, Unavailable
from core.artwork.webapi import WebApi
from core.cards import drawn_card
from core.config import SpotifySettings
from core.replies import Picture, TrackCard
from core.store import Store
from core.store.schema import utcnow

log = logging.getLogger(__name__)

REPLY_DEADLINE = 2.0
"""Seconds a reply may wait for art before the drawn card goes instead."""
NO_ART_TTL = timedelta(days=7)
MEMORY_BYTES = 32 * 1024 * 1024
USER_AGENT = "MusicMoodLifter/1.0 (album art for a chat bot)"


@dataclass(frozen=True)
class Artwork:
    """The picture for a card, and where it came from."""

    picture: Picture
    source: str  # "catalog" | "oembed" | "webapi" | "drawn"
    url: str | None = None


class _Pictures:
    """Pictures by URL, least recently used out first, within a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[str, Picture] = OrderedDict()
        self._size = 0

    def get(self, url: str) -> Picture | None:
        picture = self._items.get(url)
        if picture is not None:
            self._items.move_to_end(url)
        return picture

    def put(self, url: str, picture: Picture) -> None:
        if len(picture.data) > self.budget:
            return
        old = self._items.pop(url, None)
        self._size -= len(old.data) if old is not None else 0
        self._items[url] = picture
        self._size += len(picture.data)
        while self._size > self.budget:
            _, dropped = self._items.popitem(last=False)
            self._size -= len(dropped.data)


class ArtResolver:
    """Finds, caches and downloads album art; the drawn card whenever that fails."""

    def __init__(
        self,
        store: Store,
        client: httpx.AsyncClient,
        oembed: OEmbed,
        webapi: WebApi | None = None,
        *,
        image_guard: Guard | None = None,
        deadline: float = REPLY_DEADLINE,
        no_art_ttl: timedelta = NO_ART_TTL,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self.store = store
        self.client = client
        self.sources: list[OEmbed | WebApi] = [oembed, *([webapi] if webapi else [])]
        self.webapi = webapi
        self.image_guard = image_guard or Guard("album art")
        self.deadline = deadline
        self.no_art_ttl = no_art_ttl
        self._pictures = _Pictures(memory_bytes)
        self._inflight: dict[str, asyncio.Task[tuple[Found, bytes]]] = {}

    @classmethod
    def from_settings(
        cls,
        settings: SpotifySettings,
        store: Store,
        *,
        deadline: float = REPLY_DEADLINE,
        pace: Pacer | None = None,
    ) -> ArtResolver:
        """One shared HTTP client with short timeouts; the Web API only with credentials."""
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 2.0)),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
        )
        oembed = OEmbed(client, settings.oembed_url, Guard("spotify oembed"), pace)
        webapi = WebApi.from_settings(settings, Guard("spotify web api"), pace)
        if (settings.client_id is None) != (settings.client_secret is None):
            log.warning(
                "Spotify client %s is set without the %s: the Web API is not used",
                *(("id", "secret") if settings.client_id else ("secret", "id")),
            )
        log.info(
            "album art: oEmbed%s, then a drawn card",
            ", the Web API" if webapi else " (no Spotify credentials: no Web API)",
        )
        return cls(store, client, oembed, webapi, deadline=deadline)

    async def close(self) -> None:
        """Stop lookups in flight, then release the threads and the HTTP client."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.webapi is not None:
            self.webapi.close()
        await self.client.aclose()

    @property
    def pending(self) -> int:
        """Lookups still running in the background (a reply past its deadline leaves one)."""
        return len(self._inflight)

    # -- for a reply ---------------------------------------------------------------------------

    async def card_art(self, card: TrackCard) -> Artwork:
        """Album art for ``card`` within the deadline, else its drawn card; never raises."""
        task = self._inflight.get(card.track_id)
        if task is None:
            task = asyncio.create_task(self._remote(card))
            self._inflight[card.track_id] = task
            task.add_done_callback(lambda done: self._settled(card.track_id, done))
        try:
            async with asyncio.timeout(self.deadline):
                found, picture = await asyncio.shield(task)
        except TimeoutError:
            log.info("art for %s not here in %.1f s; a drawn card this time", card.track_id,
                     self.deadline)  # fmt: skip
        except ArtworkError as why:
            log.debug("no album art for %s: %s", card.track_id, why)
        except Exception:  # art is decoration: a broken store must not cost the reply
            log.warning("album art lookup for %s failed", card.track_id, exc_info=True)
        else:
            return Artwork(picture, found.source, found.art_url)
        return Artwork(await self._drawn(card), "drawn")

    async def _drawn(self, card: TrackCard) -> Picture:
        """The drawn card, kept like a picture: one song goes to many people."""
        key = "\0".join(("drawn", card.title, card.artist, card.mood))
        picture = self._pictures.get(key)
        if picture is None:
            picture = await drawn_card(card)
            self._pictures.put(key, picture)
        return picture

    def _settled(self, track_id: str, task: asyncio.Task[tuple[Found, Picture]]) -> None:
        if self._inflight.get(track_id) is task:
            del self._inflight[track_id]
        if not task.cancelled() and task.exception() is not None:  # seen, so never "unretrieved"
            log.debug("art lookup for %s ended: %s", track_id, task.exception())

    async def _remote(self, card: TrackCard) -> tuple[Found, Picture]:
        track_id = card.track_id
        found = await self.find(
            track_id, card.art_url, checked_at=card.art_checked_at,
            from_catalog=card.art_from_catalog,
        )  # fmt: skip
        picture = self._pictures.get(found.art_url)
        if picture is None:
            try:
                picture = await self.image_guard.call(
                    lambda: fetch_image(self.client, found.art_url)
                )
            except NoArt:
                log.info("art URL of %s serves no usable picture; forgetting it", track_id)
                await self.store.set_track_art(track_id, None)
                raise
            self._pictures.put(found.art_url, picture)
        return found, picture

    # -- lookups -------------------------------------------------------------------------------

    async def find(
        self,
        track_id: str,
        known_url: str | None = None,
        *,
        checked_at: datetime | None = None,
        from_catalog: bool = False,
    ) -> Found:
        """The art URL: the catalog's if known (or "none" if checked lately), else a lookup.

        With ``from_catalog`` (a caller that has just read the track, like a fresh card),
        ``known_url`` and ``checked_at`` are the catalog's and the track is not read again.
        """
        if known_url:
            return Found(known_url, "catalog")
        if not from_catalog:
            record = await self.store.get_track(track_id)
            if record is not None and record.art_url:
                return Found(record.art_url, "catalog")
            checked_at = record.art_checked_at if record is not None else None
        if checked_at is not None and utcnow() - checked_at < self.no_art_ttl:
            raise NoArt(f"{track_id} had no art when checked at {checked_at:%Y-%m-%d %H:%M}")
        return await self.lookup(track_id)

    async def lookup(self, track_id: str) -> Found:
        """Ask each upstream in turn and cache a definite answer (art, or none anywhere).

        Raises :class:`NoArt` (cached) or the last :class:`Unavailable` (not cached).
        """
        not_now: Unavailable | None = None
        for source in self.sources:
            try:
                found = await source.find(track_id)
            except NoArt as why:
                log.debug("%s", why)
                continue
            except Unavailable as why:
                not_now = why
                continue
            await self.store.set_track_art(track_id, found.art_url)
            return found
        if not_now is not None:
            raise not_now
        await self.store.set_track_art(track_id, None)
        raise NoArt(f"no art for {track_id} anywhere")

    def all_breakers_open(self) -> bool:
        """Whether every upstream failed its breaker's threshold of times in a row."""
        return all(s.guard.failures >= s.guard.threshold for s in self.sources)

    def any_breaker_open(self) -> bool:
        """Whether some upstream is not asked now because it kept failing."""
        return any(s.guard.why == "breaker open" for s in self.sources)

    def cool_down_time(self) -> float:
        """Seconds until every upstream that asked us to slow down (429) may be asked again
        (for bulk work, which can wait)."""
        guards = [source.guard for source in self.sources]
        return max((g.wait_time() for g in guards if g.why == "cooling down"), default=0.0)
