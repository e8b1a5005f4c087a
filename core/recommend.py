"""Choose the next song for a user and say why, as a platform-neutral :class:`TrackCard`."""

from __future__ import annotations

import logging

from core.moods import Mode, check_emotion, mood_for, parse_mode, reason
from core.replies import TrackCard
from core.store import Pick, Store, UserRecord

log = logging.getLogger(__name__)


def effective_mode(
    user: UserRecord, default: Mode | str, override: Mode | str | None = None
) -> Mode:
    """The mode for this request: an explicit override, else the user's choice, else the default."""
    if override is not None:
        return parse_mode(override)
    return user.mode if user.mode is not None else parse_mode(default)


async def recommend_for_emotion(
    store: Store,
    user: UserRecord,
    emotion: str,
    *,
    default_mode: Mode | str = Mode.LIFT,
    mode: Mode | str | None = None,
    confidence: float | None = None,
) -> TrackCard:
    """A song answering ``emotion`` under the user's lift/match preference, never a repeat
    until the user has heard every song of that mood (then ``new_round`` is set)."""
    emotion = check_emotion(emotion)
    mood = mood_for(emotion, effective_mode(user, default_mode, mode))
    pick = await store.pick_and_deliver(user.id, mood, emotion)
    return card(pick, emotion=emotion, confidence=confidence)


async def recommend_for_mood(store: Store, user: UserRecord, mood: str) -> TrackCard:
    """Another song of ``mood`` with no new photo (the "/more" button)."""
    pick = await store.pick_and_deliver(user.id, mood)
    return card(pick)


def card(pick: Pick, *, emotion: str | None = None, confidence: float | None = None) -> TrackCard:
    """The reply for a delivered track."""
    track = pick.track
    mood = track.mood or ""
    return TrackCard(
        track_id=track.id,
        title=track.name,
        artist=track.artist,
        album=track.album,
        mood=mood,
        spotify_url=track.spotify_url,
        art_url=track.art_url,
        emotion=emotion,
        confidence=confidence,
        reason=reason(emotion, mood) if emotion else f"another {mood} one",
        new_round=pick.new_round,
        notes=(f"you have heard every {mood} song here — starting over",) if pick.new_round else (),
    )
