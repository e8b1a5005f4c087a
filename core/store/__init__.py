"""Persistence: SQLAlchemy async (SQLite by default, any async URL works) with Alembic migrations.

``Store`` is opened once at start-up and passed to whoever needs it; its methods are the use
cases (one transaction each). ``upgrade`` brings a database to the current schema.
"""

from core.store.engine import create_engine, normalize_url
from core.store.migrate import current_revision, downgrade, head_revision, upgrade
from core.store.store import (
    CatalogCounts,
    DetectionRecord,
    Forgotten,
    HistoryEntry,
    Pick,
    RatingRecord,
    Store,
    TrackRecord,
    UserRecord,
)

__all__ = [
    "CatalogCounts",
    "DetectionRecord",
    "Forgotten",
    "HistoryEntry",
    "Pick",
    "RatingRecord",
    "Store",
    "TrackRecord",
    "UserRecord",
    "create_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "normalize_url",
    "upgrade",
]
