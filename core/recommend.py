"""Choose the next song for a user and say why, as a platform-neutral :class:`TrackCard`.

The "never repeat until the mood is exhausted" guarantee lives in the store
(:meth:`core.store.Store.pick_and_deliver`): a unique constraint plus retry, so it holds across
tasks and processes without any lock here.
"""

from __future__ import annotations

import logging

from core.moods import Mode, check_emotion, mood_for, parse_mode, reason
from core.replies import TrackCard
from core.store import Pick, Store, UserRecord

log = logging.getLogger(__name__)


def effective_mode(
    user: UserRecord, default: Mode | str, override: Mode | str | None = None
) -> Mode:
    """The mode for one request: an explicit override, else the user's choice, else the default."""
    if override is not None:
        return parse_mode(override)
    return user.mode if user.mode is not None else parse_mode(default)


class Recommender:
    """Picks songs from the store under the configured default mode."""

    def __init__(self, store: Store, default_mode: Mode | str = Mode.LIFT) -> None:
        self.store = store
        self.default_mode = parse_mode(default_mode)

    async def pick(self, user_id: int, mood: str, emotion: str | None = None) -> Pick:
        """A track of ``mood`` the user has not had this round, recorded as delivered.

        Raises :class:`core.errors.CatalogEmpty` when the mood has no servable track.
        """
        return await self.store.pick_and_deliver(user_id, mood, emotion)

    async def for_emotion(
        self,
        user: UserRecord,
        emotion: str,
        *,
        mode: Mode | str | None = None,
        confidence: float | None = None,
        again: bool = False,
    ) -> TrackCard:
        """A song answering ``emotion`` under the user's lift/match preference (or ``mode``).

        ``again``: one more song for a reading already answered (/more): recorded with its
        emotion, but the card continues the mood instead of presenting the reading as new.
        """
        emotion = check_emotion(emotion)
        mood = mood_for(emotion, effective_mode(user, self.default_mode, mode))
        pick = await self.pick(user.id, mood, emotion)
        if again:
            return card(pick, mood)
        return card(pick, mood, emotion=emotion, confidence=confidence)


def card(
    pick: Pick, mood: str, *, emotion: str | None = None, confidence: float | None = None
) -> TrackCard:
    """The reply for a delivered track."""
    track = pick.track
    return TrackCard(
        track_id=track.id,
        title=track.name,
        artist=track.artist,
        album=track.album,
        mood=mood,
        spotify_url=track.spotify_url,
        art_url=track.art_url,
        art_checked_at=track.art_checked_at,
        art_from_catalog=True,
        emotion=emotion,
        confidence=confidence,
        reason=reason(emotion, mood) if emotion else f"another {mood} one for you",
        new_round=pick.new_round,  # the adapters word it (one note, not two)
    )
