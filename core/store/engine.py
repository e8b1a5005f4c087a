"""Engine creation: any SQLAlchemy async URL; SQLite gets the settings a shared file needs."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from core.config import masked_url
from core.errors import StoreError
from core.store import one_trip

log = logging.getLogger(__name__)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; a bare ``sqlite://`` or ``postgresql://`` gets its async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {masked_url(str(url))!r}") from None
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def create_engine(
    url: str | URL, *, echo: bool = False, busy_timeout_ms: int = 5000
) -> AsyncEngine:
    """An async engine; for SQLite: WAL (readers never block the writer), a busy timeout (writers
    wait instead of failing), enforced foreign keys (so forgetting a user cascades) and secure
    delete (deleted rows are overwritten with zeros, not left in free pages)."""
    parsed = normalize_url(url)
    file = sqlite_file(parsed)
    if file is not None:
        _create_private(file)
    sqlite = parsed.get_backend_name() == "sqlite"
    # SQLite: the pool's reset of a returned connection is ours (see _rollback_if_open), and
    # each statement is one trip to aiosqlite's thread, not four (see core.store.one_trip).
    options: dict[str, Any] = (
        {"pool_reset_on_return": None, "async_creator": one_trip.connector(parsed)}
        if sqlite
        else {}
    )
    try:
        engine = create_async_engine(parsed, echo=echo, **options)
    except (ArgumentError, ImportError) as exc:
        shown = masked_url(parsed.render_as_string(hide_password=False))
        raise StoreError(f"cannot use database URL {shown}: {exc}") from None
    if sqlite:
        event.listen(
            engine.sync_engine, "connect", _sqlite_pragmas(file is not None, busy_timeout_ms)
        )
        event.listen(engine.sync_engine.pool, "reset", _rollback_if_open)
    return engine


def _create_private(file: Path) -> None:
    """Create the database file (and its folder, if missing) for its owner alone: it holds every
    user's songs, ratings and last reading. SQLite gives the -wal and -shm files the database
    file's permissions. An existing file or folder keeps the mode its owner chose."""
    if not file.parent.exists():
        file.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _rollback_if_open(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """The pool's reset of a SQLite connection coming back: a rollback only when a transaction
    is still open, which SQLite itself reports.

    SQLAlchemy rolls back every returned connection, and after a commit that is a round trip to
    aiosqlite's thread that does nothing: with one per unit of work, 2 of the 18 crossings that a
    photo's store work had.
    """
    if not state.asyncio_safe or state.transaction_was_reset:
        return  # garbage collected (no await possible here), or the session already rolled back
    if record.driver_connection is None or record.driver_connection.in_transaction:
        dbapi_connection.rollback()


def _sqlite_pragmas(on_file: bool, busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA secure_delete = ON")
            if on_file:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    return on_connect
