"""The store's use-case functions: one session (one transaction) per call.

Callers get plain frozen records back, never live ORM objects, so nothing lazy-loads later on
another task or after the session is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    bindparam,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.errors import CatalogEmpty, NotYourTrack, StoreError, UnknownUser
from core.moods import MOODS, Mode, check_emotion, check_mood, parse_mode
from core.store import migrate
from core.store.engine import create_engine
from core.store.schema import Delivery, Detection, Rating, Track, User, utcnow
from core.taste import TASTE_FEATURES, TastePolicy

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

CHECKPOINT_WAIT_MS = 100  # how long the checkpoint after a forget waits for readers
CHECKPOINT_RETRY_S = 1.0  # a checkpoint kept busy by a reader is tried again this often...
CHECKPOINT_TRIES = 300  # ...this many times (five minutes), then left to closing the store

T = TypeVar("T")

BUSY_ATTEMPTS = 5
"""A write unit runs at most this often when the database asks for a rerun (SQLite locked past
its busy timeout under heavy load; a PostgreSQL serialization failure or deadlock). Each SQLite
attempt may already have waited the whole busy timeout, so this budget stays small whatever a
unit's budget for conflicts is."""
BUSY_BACKOFF = 0.05  # seconds before the second attempt, doubled before each further one

RETRY_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization_failure and deadlock_detected: the transaction may simply rerun."""


def _is_transient(exc: DBAPIError) -> bool:
    """An error that a rerun of the same unit of work can succeed after."""
    if getattr(exc.orig, "sqlstate", None) in RETRY_SQLSTATES:
        return True
    message = str(exc.orig)
    return "locked" in message or "busy" in message  # SQLite's SQLITE_BUSY / SQLITE_LOCKED


CONFLICT_ATTEMPTS = 5
"""A write unit runs at most this often when a concurrent one wrote the same unique key first."""

PICK_ATTEMPTS = 100
"""Conflicting concurrent picks retry; each retry sees the rows that beat it, so this is ample.
(Conflicts only: a busy database gets :data:`BUSY_ATTEMPTS`.)"""

TASTE_MEMORY = 200
"""A pick weighs at most this many of the user's latest ratings (taste drifts; cost stays flat)."""


@dataclass(frozen=True)
class UserRecord:
    id: int
    platform: str
    platform_user_id: str
    mode: Mode | None  # None: the configured default
    created_at: datetime


@dataclass(frozen=True)
class TrackRecord:
    id: str
    name: str
    artist: str
    album: str | None
    release_date: str | None
    mood: str | None
    art_url: str | None
    art_checked_at: datetime | None

    @property
    def spotify_url(self) -> str:
        return f"https://open.spotify.com/track/{self.id}"


@dataclass(frozen=True)
class Pick:
    """A delivered track; ``new_round`` when it starts over a mood the user has heard in full."""

    track: TrackRecord
    round: int
    new_round: bool


@dataclass(frozen=True)
class DetectionRecord:
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    faces: int
    detected_at: datetime


@dataclass(frozen=True)
class RatingRecord:
    """A user's rating of a track: +1 (liked) or -1 (disliked); ``previous`` before this one."""

    track_id: str
    value: int
    previous: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class HistoryEntry:
    """One song sent to a user: what, when, for which emotion and mood, and their rating."""

    track: TrackRecord
    emotion: str | None
    mood: str
    delivered_at: datetime
    rating: int | None


@dataclass(frozen=True)
class Forgotten:
    """What ``forget_user`` deleted; falsy when there was nothing to forget."""

    users: int
    deliveries: int
    detections: int
    ratings: int = 0

    def __bool__(self) -> bool:
        return self.users + self.deliveries + self.detections + self.ratings > 0


def servable(min_confidence: float) -> ColumnElement[bool]:
    """The one definition of a track the bot may serve, shared by the pick and the stats.

    A mood from a label always counts; a model's mood only at or above ``min_confidence``, so
    doubtful guesses stay in the catalog (and in the stats) without reaching anyone.
    """
    return Track.mood.is_not(None) & (
        Track.mood_source.is_distinct_from("model")
        | (func.coalesce(Track.mood_confidence, 0.0) >= min_confidence)
    )


@dataclass(frozen=True)
class CatalogCounts:
    """The catalog by mood and by where each mood came from (dicts hold all four moods)."""

    by_mood: dict[str, int]  # servable tracks per mood
    unassigned: int  # tracks without a mood yet
    total: int  # every track
    labelled: dict[str, int]  # servable, mood from a label
    modelled: dict[str, int]  # servable, mood from the model
    held_back: dict[str, int]  # model mood below ``min_confidence``: kept, not served
    min_confidence: float
    model_versions: dict[str, int]  # tracks per model version that gave their mood

    @property
    def servable(self) -> int:
        return sum(self.by_mood.values())


def _user(row: User) -> UserRecord:
    return UserRecord(
        row.id, row.platform, row.platform_user_id, Mode(row.mode) if row.mode else None,
        row.created_at,
    )  # fmt: skip


_CARD_COLUMNS = (
    Track.id, Track.name, Track.artist, Track.album, Track.release_date, Track.mood,
    Track.art_url, Track.art_checked_at,
)  # fmt: skip
"""A :class:`TrackRecord`'s fields, in its order (what a pick reads for the card)."""


def _current_round(user_id: ColumnElement[int], mood: ColumnElement[str]) -> ColumnElement[int]:
    """The user's latest round of ``mood`` (NULL before their first song of it)."""
    return (
        select(func.max(Delivery.round))
        .where(Delivery.user_id == user_id, Delivery.mood == mood)
        .correlate(None)  # its own scan of deliveries, never the enclosing query's row
        .scalar_subquery()
    )


@lru_cache(maxsize=8)
def _candidates_statement(min_confidence: float, fixed_round: bool) -> Select[Any]:
    """The query of :meth:`Store._candidates`, built once with bound ``user_id``, ``mood`` and
    (``fixed_round``) ``round``, else the user's current round as a subquery.

    Building a statement of this size and its cache key took SQLAlchemy ~1.5 ms of the event
    loop's CPU on every pick, about as long as SQLite takes to answer it; a statement built
    once keeps its cache key.
    """
    user_id = bindparam("user_id", type_=Integer)
    mood = bindparam("mood", type_=String)
    round_ = (
        bindparam("round", type_=Integer)
        if fixed_round
        else func.coalesce(_current_round(user_id, mood), 1)
    )
    given_in_round = select(Delivery.track_id).where(
        Delivery.user_id == user_id, Delivery.round == round_
    )
    last_given = (
        select(Delivery.track_id, func.max(Delivery.delivered_at).label("last"))
        .where(Delivery.user_id == user_id)
        .group_by(Delivery.track_id)
        .subquery()
    )
    rated = select(Rating.user_id).where(Rating.user_id == user_id).correlate(None).exists()
    features = [getattr(Track, name) for name in TASTE_FEATURES]
    return (
        select(
            *_CARD_COLUMNS,
            last_given.c.last.label("last"),
            round_.label("round"),
            rated.label("rated"),
            *features,
        )
        .outerjoin(last_given, last_given.c.track_id == Track.id)
        .where(
            Track.mood == mood,
            servable(min_confidence),
            Track.id.not_in(given_in_round),
        )
    )


def _track(row: Track) -> TrackRecord:
    return TrackRecord(
        row.id, row.name, row.artist, row.album, row.release_date, row.mood, row.art_url,
        row.art_checked_at,
    )  # fmt: skip


async def _user_and_reading(
    session: AsyncSession, platform: str, account: str
) -> tuple[User | None, Detection | None]:
    """The user of a platform account and their stored reading, in one joined SELECT."""
    found = (
        await session.execute(
            select(User, Detection)
            .outerjoin(Detection, Detection.user_id == User.id)
            .where(User.platform == platform, User.platform_user_id == account)
        )
    ).one_or_none()
    return (found[0], found[1]) if found is not None else (None, None)


def _detection(row: Detection) -> DetectionRecord:
    return DetectionRecord(
        row.emotion, row.confidence, dict(row.probabilities), row.faces, row.detected_at
    )


def _reading(
    emotion: str, probabilities: Mapping[str, float], faces: int, confidence: float | None
) -> DetectionRecord:
    """A checked reading to store; ``confidence`` defaults to the probability of ``emotion``."""
    emotion = check_emotion(emotion)
    probs = {check_emotion(k): float(v) for k, v in probabilities.items()}
    if confidence is None:
        confidence = probs.get(emotion, 0.0)
    return DetectionRecord(emotion, float(confidence), probs, int(faces), utcnow())


def _keep_reading(
    session: AsyncSession, user_id: int, row: Detection | None, record: DetectionRecord
) -> None:
    """Write ``record`` over the user's stored reading ``row`` (or add one when None)."""
    if row is None:
        row = Detection(user_id=user_id)
        session.add(row)
    row.emotion = record.emotion
    row.confidence = record.confidence
    row.probabilities = record.probabilities
    row.faces = record.faces
    row.detected_at = record.detected_at


class Store:
    """The database behind the bot: an engine and a session factory, opened once at start-up."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        busy_timeout_ms: int = 5000,
        min_mood_confidence: float = 0.0,
        taste: TastePolicy | None = None,
    ) -> None:
        self.url = url
        self.min_mood_confidence = min_mood_confidence  # see :func:`servable`
        self.taste = taste or TastePolicy()  # orders the picks of users who rated songs
        self.engine: AsyncEngine = create_engine(url, echo=echo, busy_timeout_ms=busy_timeout_ms)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._checkpoint_retry: asyncio.Task[None] | None = None  # see _checkpoint()

    @classmethod
    async def open(cls, target: str | Settings, *, upgrade: bool = True) -> Store:
        """Open the database of ``target`` (a URL or the settings) and bring it to head.

        A bare URL serves every mood (no confidence threshold).
        """
        if isinstance(target, str):
            store = cls(target)
        else:
            db = target.database
            store = cls(
                target.database_url,
                echo=db.echo,
                busy_timeout_ms=db.busy_timeout_ms,
                min_mood_confidence=target.catalog.min_mood_confidence,
            )
        if upgrade:
            try:
                await store.upgrade()
            except BaseException:
                await store.close()
                raise
        return store

    async def upgrade(self) -> str | None:
        """Bring the schema to head (the app does this at start)."""
        return await migrate.upgrade(self.url)

    async def close(self) -> None:
        """Stop a pending checkpoint retry and close every connection (SQLite then moves the
        write-ahead log into the database file and deletes it, if no other process reads)."""
        retry, self._checkpoint_retry = self._checkpoint_retry, None
        if retry is not None and not retry.done():
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- users -------------------------------------------------------------------------------

    async def get_or_create_user(self, platform: str, platform_user_id: str) -> UserRecord:
        """The user for this platform account, created on first contact (race-safe)."""
        account = str(platform_user_id)
        where = (User.platform == platform) & (User.platform_user_id == account)

        async def unit(session: AsyncSession) -> tuple[UserRecord, bool]:
            found = (await session.scalars(select(User).where(where))).one_or_none()
            if found is not None:
                return _user(found), False
            user = User(platform=platform, platform_user_id=account)
            session.add(user)
            await session.flush()  # its id; a concurrent first contact fails here or at commit
            return _user(user), True

        user, created = await self._write(f"create a user on {platform}", unit)
        if created:
            log.info("new user %s on %s", user.id, platform)
        return user

    async def find_user(self, platform: str, platform_user_id: str) -> UserRecord | None:
        """The user for this platform account, if they ever talked to the bot."""
        async with self.sessions() as session:
            found = await session.scalars(
                select(User).where(
                    User.platform == platform, User.platform_user_id == str(platform_user_id)
                )
            )
            row = found.one_or_none()
            return _user(row) if row is not None else None

    async def set_mode(self, user_id: int, mode: Mode | str | None) -> UserRecord:
        """Set the user's lift/match preference; None goes back to the configured default."""
        value = parse_mode(mode).value if mode is not None else None

        async def unit(session: AsyncSession) -> UserRecord:
            row = await session.get(User, user_id)
            if row is None:
                raise UnknownUser(f"no user {user_id}")
            row.mode = value
            await session.flush()
            return _user(row)

        return await self._write(f"set mode of user {user_id}", unit)

    async def forget_user(self, user_id: int) -> Forgotten:
        """Delete the user and everything about them (deliveries, last detection, ratings)."""

        async def unit(session: AsyncSession) -> list[int]:
            # Explicit deletes: correct even on a backend where the cascade is not enforced.
            return [
                (await session.execute(delete(table).where(column == user_id))).rowcount or 0
                for table, column in (
                    (Delivery, Delivery.user_id),
                    (Detection, Detection.user_id),
                    (Rating, Rating.user_id),
                    (User, User.id),
                )
            ]

        counts = await self._write(f"forget user {user_id}", unit)
        log.info("forgot user %s", user_id)
        await self._checkpoint()
        deliveries, detections, ratings, users = counts
        return Forgotten(users, deliveries, detections, ratings)

    async def _checkpoint(self) -> None:
        """SQLite: move the write-ahead log into the database file and empty it, so rows just
        deleted (zeroed there by secure_delete) keep no copy in the -wal file.

        A reader still on an older snapshot keeps the log from being emptied: then it is tried
        again in the background every :data:`CHECKPOINT_RETRY_S` until it is (an automatic
        checkpoint copies the log but leaves its old pages in the file); the deletion itself is
        committed either way.
        """
        if self.engine.dialect.name != "sqlite":
            return
        try:
            if await self._empty_the_log():
                return
        except DBAPIError as exc:
            log.warning("WAL checkpoint failed: %s", exc.orig)
            return
        log.info("WAL checkpoint busy (a reader is active); trying again in the background")
        if self._checkpoint_retry is None or self._checkpoint_retry.done():
            self._checkpoint_retry = asyncio.create_task(self._empty_the_log_later())

    async def _empty_the_log_later(self) -> None:
        for _ in range(CHECKPOINT_TRIES):
            await asyncio.sleep(CHECKPOINT_RETRY_S)
            try:
                if await self._empty_the_log():
                    log.info("WAL checkpoint done")
                    return
            except DBAPIError as exc:
                log.warning("WAL checkpoint failed: %s", exc.orig)
                return
        log.warning(
            "WAL checkpoint still busy after %d tries; left to closing the store", CHECKPOINT_TRIES
        )

    async def _empty_the_log(self) -> bool:
        """One TRUNCATE checkpoint; whether it emptied the log."""
        async with self.engine.connect() as connection:
            # A TRUNCATE checkpoint waits out the busy timeout for readers and holds off
            # writers meanwhile: give up after a moment instead of stalling every write.
            timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            await connection.exec_driver_sql(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            try:
                result = await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                return not result.scalar()
            finally:
                await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(timeout or 0)}")

    async def forget(self, platform: str, platform_user_id: str) -> Forgotten:
        """:meth:`forget_user` by platform account; falsy when the bot never knew them."""
        user = await self.find_user(platform, platform_user_id)
        if user is None:
            return Forgotten(0, 0, 0)
        return await self.forget_user(user.id)

    # -- readings ----------------------------------------------------------------------------

    async def record_reading(
        self,
        platform: str,
        platform_user_id: str,
        emotion: str,
        probabilities: Mapping[str, float],
        faces: int = 1,
        *,
        confidence: float | None = None,
    ) -> tuple[UserRecord, DetectionRecord]:
        """Keep the user's latest reading (replacing the previous one; never the photo),
        creating the user on first contact; ``confidence`` defaults to the probability of
        ``emotion``.

        The photo path's store work before the pick: one joined SELECT and one write. A
        concurrent first contact or first reading fails the write on a unique key; the rerun
        then finds and updates those rows.
        """
        record = _reading(emotion, probabilities, faces, confidence)
        account = str(platform_user_id)

        async def unit(session: AsyncSession) -> tuple[UserRecord, bool]:
            user, row = await _user_and_reading(session, platform, account)
            created = user is None
            if user is None:
                user = User(platform=platform, platform_user_id=account)
                session.add(user)
                await session.flush()  # its id, for the reading
            _keep_reading(session, user.id, row, record)
            return _user(user), created

        user, created = await self._write(f"record a reading from {platform}", unit)
        if created:
            log.info("new user %s on %s", user.id, platform)
        return user, record

    async def find_user_and_reading(
        self, platform: str, platform_user_id: str
    ) -> tuple[UserRecord | None, DetectionRecord | None]:
        """:meth:`find_user` and their last reading in one read (what /more and
        /mood ask first): one statement instead of two units of work."""
        async with self.sessions() as session:
            user, row = await _user_and_reading(session, platform, str(platform_user_id))
        return (
            _user(user) if user is not None else None,
            _detection(row) if row is not None else None,
        )

    # -- ratings -----------------------------------------------------------------------------

    async def rate(self, user_id: int, track_id: str, value: int) -> RatingRecord:
        """Record (or change) the user's +1/-1 for a track; only for a track they were sent.

        Raises :class:`NotYourTrack` for any other track, so a forged button rates nothing.
        """
        if value not in (1, -1):
            raise ValueError(f"a rating is +1 or -1, not {value!r}")

        async def unit(session: AsyncSession) -> RatingRecord:
            sent = await session.scalar(
                select(Delivery.id)
                .where(Delivery.user_id == user_id, Delivery.track_id == track_id)
                .limit(1)
            )
            if sent is None:
                raise NotYourTrack(f"user {user_id} was never sent track {track_id!r}")
            now = utcnow()
            row = await session.get(Rating, (user_id, track_id))
            previous = row.value if row is not None else None
            if row is None:  # a concurrent first rating fails the commit; the rerun updates it
                row = Rating(user_id=user_id, track_id=track_id, created_at=now)
                session.add(row)
            row.value = value
            row.updated_at = now
            return RatingRecord(track_id, value, previous, row.created_at, now)

        return await self._write(f"rate for user {user_id}", unit)

    async def history(self, user_id: int, limit: int = 10) -> list[HistoryEntry]:
        """The user's last ``limit`` deliveries, newest first, each with their rating."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(Delivery, Track, Rating.value)
                .join(Track, Track.id == Delivery.track_id)
                .outerjoin(
                    Rating, (Rating.user_id == Delivery.user_id) & (Rating.track_id == Track.id)
                )
                .where(Delivery.user_id == user_id)
                .order_by(Delivery.delivered_at.desc(), Delivery.id.desc())
                .limit(limit)
            )
            return [
                HistoryEntry(_track(track), d.emotion, d.mood, d.delivered_at, value)
                for d, track, value in rows
            ]

    # -- tracks ------------------------------------------------------------------------------

    async def get_track(self, track_id: str) -> TrackRecord | None:
        async with self.sessions() as session:
            row = await session.get(Track, track_id)
            return _track(row) if row is not None else None

    async def set_track_art(self, track_id: str, art_url: str | None) -> None:
        """Cache what the artwork lookup found (None: looked, found nothing) and when."""

        async def unit(session: AsyncSession) -> None:
            row = await session.get(Track, track_id)
            if row is not None:
                row.art_url = art_url
                row.art_checked_at = utcnow()

        await self._write(f"art of track {track_id}", unit)

    async def catalog_counts(self) -> CatalogCounts:
        """Tracks by mood and source, with the same :func:`servable` rule the pick uses."""
        ok = servable(self.min_mood_confidence).label("ok")
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        Track.mood, Track.mood_source, Track.mood_model_version, ok, func.count()
                    ).group_by(Track.mood, Track.mood_source, Track.mood_model_version, ok)
                )
            ).all()
        by_mood, labelled, modelled, held_back = ({m: 0 for m in MOODS} for _ in range(4))
        versions: dict[str, int] = {}
        unassigned = total = 0
        for mood, source, version, ok_, n in rows:
            total += n
            if version is not None and source == "model":
                versions[version] = versions.get(version, 0) + n
            if mood is None:
                unassigned += n
            elif not ok_:
                held_back[mood] += n
            else:
                by_mood[mood] += n
                (modelled if source == "model" else labelled)[mood] += n
        return CatalogCounts(
            by_mood, unassigned, total, labelled, modelled, held_back,
            self.min_mood_confidence, versions,
        )  # fmt: skip

    # -- recommendation ----------------------------------------------------------------------

    async def pick_and_deliver(self, user_id: int, mood: str, emotion: str | None = None) -> Pick:
        """Give the user a track of ``mood`` they have not had in the current round.

        No process lock: the pick reads candidates, then inserts the delivery; UNIQUE(user,
        track, round) rejects a track that a concurrent pick took first, and the loser tries
        again. This holds across processes and machines sharing the database. On PostgreSQL
        the pick first takes the user's row lock, so picks for one user from any instance take
        turns instead of colliding and retrying (SQLite's write lock does the same).
        When the round holds every track of the mood, the next round starts with the least
        recently delivered track; the first delivery of a new round says so (``new_round``).
        """
        mood = check_mood(mood)
        emotion = check_emotion(emotion) if emotion is not None else None

        async def unit(session: AsyncSession) -> Pick:
            await self._take_turn(session, user_id)
            track, round_ = await self._choose(session, user_id, mood)
            delivery = Delivery(
                user_id=user_id, track_id=track.id, emotion=emotion, mood=mood,
                round=round_, delivered_at=utcnow(),
            )  # fmt: skip
            session.add(delivery)
            # Flushing takes the write lock (SQLite), so what we read next is exact.
            await session.flush()
            new_round = (
                round_ > 1
                and not await self._others_in_round(session, delivery)
                and await self._had_mood_before(session, delivery)
            )
            return Pick(track, round_, new_round)

        async def lost(session: AsyncSession, exc: IntegrityError) -> None:
            if await session.get(User, user_id) is None:
                raise UnknownUser(f"no user {user_id}") from None
            log.debug("pick conflict for user %s (%s); retrying", user_id, exc.orig)

        return await self._write(
            f"record a delivery to user {user_id}", unit, conflicts=PICK_ATTEMPTS, on_conflict=lost
        )

    async def withdraw_delivery(self, user_id: int, track_id: str) -> bool:
        """Undo the user's latest delivery of ``track_id``: the card never reached them (the
        chat platform refused it), so the song is neither in their history nor used up."""

        async def unit(session: AsyncSession) -> bool:
            latest = await session.scalar(
                select(Delivery.id)
                .where(Delivery.user_id == user_id, Delivery.track_id == track_id)
                .order_by(Delivery.id.desc())
                .limit(1)
            )
            if latest is None:
                return False
            await session.execute(delete(Delivery).where(Delivery.id == latest))
            return True

        return await self._write(f"withdraw a delivery to user {user_id}", unit)

    async def _write(
        self,
        what: str,
        unit: Callable[[AsyncSession], Awaitable[T]],
        *,
        conflicts: int = CONFLICT_ATTEMPTS,
        on_conflict: Callable[[AsyncSession, IntegrityError], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``unit`` in a session of its own and commit, as one unit of work, and rerun it:

        * after a unique-key conflict (a concurrent request wrote first: the rerun sees its
          rows), at once, ``conflicts`` runs in all; ``on_conflict`` may turn a conflict into an
          error first;
        * after a transient error (see :func:`_is_transient`: SQLite's "database is locked"
          once the busy timeout has passed, PostgreSQL's serialization failure or deadlock),
          :data:`BUSY_ATTEMPTS` runs in all, after a pause of :data:`BUSY_BACKOFF` seconds,
          doubled each time.

        The two budgets are counted apart. Any other database error, or a budget spent, is a
        :class:`StoreError`.
        """
        conflicted = busy = 0
        while True:
            pause = 0.0
            async with self.sessions() as session:
                try:
                    result = await unit(session)
                    await session.commit()
                    return result
                except IntegrityError as exc:
                    await session.rollback()
                    if on_conflict is not None:
                        await on_conflict(session, exc)
                    conflicted += 1
                    if conflicted >= conflicts:
                        raise StoreError(
                            f"cannot {what}: still conflicting after {conflicted} attempts"
                        ) from None
                except DBAPIError as exc:
                    await session.rollback()
                    if not _is_transient(exc):
                        raise StoreError(f"cannot {what}: {exc.orig}") from None
                    busy += 1
                    if busy >= BUSY_ATTEMPTS:
                        raise StoreError(
                            f"cannot {what}: database busy after {busy} attempts"
                        ) from None
                    log.warning("%s: database busy; retrying", what)
                    pause = BUSY_BACKOFF * 2 ** (busy - 1)
            if pause:
                await asyncio.sleep(pause)  # with the connection back in the pool

    async def _take_turn(self, session: AsyncSession, user_id: int) -> None:
        """PostgreSQL: hold the user's row lock until this transaction ends, so concurrent
        picks for one user queue up (other users never wait) rather than collide on the
        constraint and retry one another over and over."""
        if self.engine.dialect.name != "postgresql":
            return
        locked = await session.scalar(select(User.id).where(User.id == user_id).with_for_update())
        if locked is None:
            raise UnknownUser(f"no user {user_id}")

    @staticmethod
    async def _others_in_round(session: AsyncSession, delivery: Delivery) -> bool:
        found = await session.scalar(
            select(Delivery.id)
            .where(
                Delivery.user_id == delivery.user_id,
                Delivery.mood == delivery.mood,
                Delivery.round == delivery.round,
                Delivery.id != delivery.id,
            )
            .limit(1)
        )
        return found is not None

    @staticmethod
    async def _had_mood_before(session: AsyncSession, delivery: Delivery) -> bool:
        """Whether the user had songs of the delivery's mood in an earlier round (not so when
        the round's number comes from songs moved here from another mood)."""
        found = await session.scalar(
            select(Delivery.id)
            .where(
                Delivery.user_id == delivery.user_id,
                Delivery.mood == delivery.mood,
                Delivery.round < delivery.round,
            )
            .limit(1)
        )
        return found is not None

    async def _choose(
        self, session: AsyncSession, user_id: int, mood: str
    ) -> tuple[TrackRecord, int]:
        """The track and its round. The user's current round of ``mood`` is a subquery of the
        candidates' query (one statement, not two); only a finished round asks for it apart."""
        rows = await self._candidates(session, user_id, mood)
        if not rows:
            # The round looked full. Read it apart (another pick may have moved on since) and
            # ask again for that round, then for the next: the same reads as before the shortcut.
            current = _current_round(literal(user_id), literal(mood))
            round_ = (await session.scalar(select(current))) or 1
            for number in (round_, round_ + 1):
                rows = await self._candidates(session, user_id, mood, number)
                if rows:
                    break
            else:
                # Songs the user had in as many rounds of another mood, which new labels or a
                # new model moved to this one: a round past all the user's rounds has them.
                last = await session.scalar(
                    select(func.max(Delivery.round)).where(Delivery.user_id == user_id)
                )
                if last is not None and last >= round_ + 1:
                    rows = await self._candidates(session, user_id, mood, last + 1)
                if not rows:
                    raise CatalogEmpty(mood)
        return await self._oldest_unheard(session, user_id, rows), int(rows[0].round)

    @staticmethod
    async def _recent_ratings(session: AsyncSession, user_id: int) -> list[Row[Any]]:
        """(value, *taste features) of the user's latest :data:`TASTE_MEMORY` ratings."""
        features = [getattr(Track, name) for name in TASTE_FEATURES]
        rows = await session.execute(
            select(Rating.value, *features)
            .join(Track, Track.id == Rating.track_id)
            .where(Rating.user_id == user_id)
            .order_by(Rating.updated_at.desc())
            .limit(TASTE_MEMORY)
        )
        return list(rows.all())

    @staticmethod
    async def _disliked(session: AsyncSession, user_id: int) -> set[str]:
        """The tracks the user rated 👎."""
        found = await session.scalars(
            select(Rating.track_id).where(Rating.user_id == user_id, Rating.value < 0)
        )
        return set(found)

    async def _candidates(
        self, session: AsyncSession, user_id: int, mood: str, round_: int | None = None
    ) -> Sequence[Row[Any]]:
        """The servable tracks of ``mood`` not given in round ``round_`` (None: the user's
        current round of ``mood``), each with what its card shows, when the user last had it
        (``last``), that round's number, whether the user ever rated a song (``rated``) and its
        taste features.

        One statement: the card needs no second read of the chosen track, and a user who
        never rated a song (most users) costs no read of their ratings.
        """
        statement = _candidates_statement(self.min_mood_confidence, round_ is not None)
        values = {"user_id": user_id, "mood": mood, "round": round_}
        return (await session.execute(statement, values)).all()

    async def _oldest_unheard(
        self, session: AsyncSession, user_id: int, rows: Sequence[Row[Any]]
    ) -> TrackRecord:
        """Of the candidates ``rows``: a never-given one (at random, or by the user's taste once
        they rated songs, see :mod:`core.taste`), else the one given longest ago, songs the
        user gave a 👎 last (a new round replays them only after the rest)."""
        never = [row for row in rows if row.last is None]
        rated = await self._recent_ratings(session, user_id) if never and rows[0].rated else []
        if not never:
            disliked = await self._disliked(session, user_id) if rows[0].rated else set()
            chosen = min(rows, key=lambda r: (r.id in disliked, r.last, r.id))
        elif rated:
            # Scoring is numpy over (candidates x ratings): a worker thread, not the event loop.
            first = len(_CARD_COLUMNS) + 3  # the taste features follow last, round and rated
            pick = await asyncio.to_thread(
                self.taste.choose,
                [row[first:] for row in never],
                [row[1:] for row in rated],
                [row[0] for row in rated],
            )
            chosen = never[pick]
        else:
            chosen = random.choice(never)
        return TrackRecord(*chosen[: len(_CARD_COLUMNS)])
