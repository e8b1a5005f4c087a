"""The ORM tables. Every change here needs a new migration in ``migrations/versions``.

Times are stored as UTC and always come back timezone-aware, whatever the backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC; SQLite drops the zone, so it is put back on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware one (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """Someone talking to the bot on one platform; ``mode`` None means the configured default."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id"),
        CheckConstraint("mode IN ('lift', 'match')", name="mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    platform_user_id: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Track(Base):
    """A catalog song with its Spotify audio features; served only once it has a mood."""

    __tablename__ = "tracks"
    __table_args__ = (
        CheckConstraint("mood IN ('calm', 'happy', 'energetic', 'sad')", name="mood"),
        CheckConstraint("mood_source IN ('label', 'model')", name="mood_source"),
    )

    id: Mapped[str] = mapped_column(String(22), primary_key=True)  # Spotify track id
    name: Mapped[str] = mapped_column(String(300))
    artist: Mapped[str] = mapped_column(String(300))
    album: Mapped[str | None] = mapped_column(String(300))
    release_date: Mapped[str | None] = mapped_column(String(10))  # YYYY, YYYY-MM or YYYY-MM-DD
    popularity: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    danceability: Mapped[float] = mapped_column(Float)
    energy: Mapped[float] = mapped_column(Float)
    valence: Mapped[float] = mapped_column(Float)
    acousticness: Mapped[float] = mapped_column(Float)
    instrumentalness: Mapped[float] = mapped_column(Float)
    liveness: Mapped[float] = mapped_column(Float)
    speechiness: Mapped[float] = mapped_column(Float)
    loudness: Mapped[float] = mapped_column(Float)
    tempo: Mapped[float] = mapped_column(Float)
    key: Mapped[int] = mapped_column(Integer)
    mode: Mapped[int | None] = mapped_column(Integer)  # 1 major, 0 minor; unknown in data_moods
    time_signature: Mapped[int] = mapped_column(Integer)
    mood: Mapped[str | None] = mapped_column(String(16), index=True)
    mood_source: Mapped[str | None] = mapped_column(String(8))
    mood_confidence: Mapped[float | None] = mapped_column(Float)
    mood_model_version: Mapped[str | None] = mapped_column(String(64))
    art_url: Mapped[str | None] = mapped_column(String(500))
    art_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CatalogImport(Base):
    """A catalog source imported in full, written in the transaction that stored its tracks: what
    tells the start-up import which configured sources it still has to import.

    ``source`` is the source's name (:attr:`SourceSpec.name`, the file name, as the tracks'
    ``source``); an import of the same name again replaces the row. ``sha256`` is that of the
    file's content; it and the counts are None on the rows migration 0003 carried over from the
    tracks of a database made before this table (what was imported then is not known).
    """

    __tablename__ = "catalog_imports"

    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    rows_read: Mapped[int | None] = mapped_column(Integer)  # good rows
    inserted: Mapped[int | None] = mapped_column(Integer)
    updated: Mapped[int | None] = mapped_column(Integer)
    skipped: Mapped[int | None] = mapped_column(Integer)  # bad rows
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(Base):
    """A song given to a user. UNIQUE(user, track, round) is what makes "no repeat" atomic.

    Rounds count per user and mood: round 1 until every track of the mood was given, then 2...
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("user_id", "track_id", "round"),
        Index("ix_deliveries_user_id_mood_round", "user_id", "mood", "round"),
        CheckConstraint("round >= 1", name="round"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    track_id: Mapped[str] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"), index=True)
    emotion: Mapped[str | None] = mapped_column(String(16))
    mood: Mapped[str] = mapped_column(String(16))
    round: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Detection(Base):
    """The last emotion read for a user (never the photo itself)."""

    __tablename__ = "detections"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    emotion: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, float]] = mapped_column(JSON)
    faces: Mapped[int] = mapped_column(Integer, default=1)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rating(Base):
    """A user's 👍 (+1) or 👎 (−1) for a track they were sent; one per user and track, and
    changeable (``updated_at`` moves, ``created_at`` stays)."""

    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("value IN (-1, 1)", name="value"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    track_id: Mapped[str] = mapped_column(
        ForeignKey("tracks.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
