"""Resolve art ahead of time for the catalog (``moodlift catalog art``).

Servable tracks (those with a mood) first, then the rest; tracks already checked are skipped,
so an interrupted run picks up where it stopped. Requests are paced by the resolver's
:class:`~core.artwork.guard.Pacer`; after a 429 or an open breaker this waits as long as the
upstream asked (bulk work has time a user's reply does not), and gives up when the wait is too
long or nothing answers, leaving the rest for the next run. An upstream whose breaker is open
(it kept failing) is not waited for: the tracks that need it are left for the next run.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

from sqlalchemy import select

from core.artwork.outcomes import NoArt, Unavailable
from core.artwork.resolver import ArtResolver
from core.store import Store
from core.store.schema import Track

log = logging.getLogger(__name__)

MAX_WAIT = 15 * 60.0
"""The longest pause for a cool-down before stopping (run again later: it resumes)."""
MAX_UNANSWERED = 10
"""Consecutive tracks nobody could answer for before stopping."""


@dataclass
class PrefetchReport:
    checked: int = 0
    found: int = 0
    without_art: int = 0
    unanswered: int = 0  # not checked this time (timeouts, 5xx...); tried again next run
    left: int = 0  # unchecked tracks remaining after this run
    stopped: str | None = None  # why the run ended early, if it did


async def unchecked_tracks(store: Store, limit: int | None = None) -> list[str]:
    """Ids of tracks never checked for art, servable ones first, in a stable order."""
    query = (
        select(Track.id)
        .where(Track.art_checked_at.is_(None))
        .order_by(Track.mood.is_(None), Track.id)
        .limit(limit)
    )
    async with store.sessions() as session:
        return list((await session.scalars(query)).all())


async def prefetch_art(
    store: Store,
    resolver: ArtResolver,
    *,
    limit: int | None = None,
    progress: bool = False,
    max_wait: float = MAX_WAIT,
) -> PrefetchReport:
    """Look up art for up to ``limit`` unchecked tracks; see the module docstring."""
    report = PrefetchReport()
    ids = await unchecked_tracks(store, limit)
    from tqdm import tqdm  # the CLI's progress bar; not imported when the bot starts

    with tqdm(total=len(ids), unit="track", desc="album art", disable=not progress,
              file=sys.stderr) as bar:  # fmt: skip
        for track_id in ids:
            try:
                found = await _one(resolver, track_id, max_wait)
            except _Stop as stop:
                report.stopped = str(stop)
                break
            if found is None:
                report.unanswered += 1
                if report.unanswered >= MAX_UNANSWERED and report.checked == 0:
                    report.stopped = "Spotify does not answer"
                    break
            else:
                report.checked += 1
                report.found += found
                report.without_art += not found
            bar.update()
            bar.set_postfix(found=report.found, none=report.without_art, refresh=False)
    report.left = len(await unchecked_tracks(store))
    return report


class _Stop(Exception):
    """End the run early (the next run resumes)."""


async def _one(resolver: ArtResolver, track_id: str, max_wait: float) -> bool | None:
    """Whether ``track_id`` has art; None when no upstream answered after a few tries.

    When every upstream's breaker is open (no network, a wrong URL) the run stops at once, and
    a track that needs an upstream whose breaker is open is left at once: waiting out the
    breaker track after track took ~2 minutes a track, and a run with one dead upstream never
    ended.
    """
    for attempt in range(3):
        try:
            await resolver.lookup(track_id)
        except NoArt:
            return False
        except Unavailable as why:
            if resolver.all_breakers_open():
                raise _Stop(f"Spotify does not answer ({why})") from None
            wait = resolver.cool_down_time()
            if wait > max_wait:
                raise _Stop(f"{why}; asked to wait {wait / 60:.0f} min") from None
            if not wait and resolver.any_breaker_open():
                log.info("%s; %s left for the next run", why, track_id)
                return None
            if attempt == 2:
                break
            pause = wait or 2.0**attempt
            log.info("%s; retrying %s in %.1f s", why, track_id, pause)
            await asyncio.sleep(pause)
            continue
        return True
    return None
