"""Schema migrations (Alembic) run from code: the app upgrades to head at start.

The migration scripts ship inside the ``migrations`` package, so this works from an installed
wheel as well as from the repository, whatever the working directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

import migrations
from core.config import masked_url
from core.errors import StoreError
from core.store.engine import create_engine, normalize_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
MIGRATION_LOCK = 0x6D6F6F64  # "mood": the PostgreSQL advisory lock that upgrades take in turn


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts (no alembic.ini needed).

    The app hands Alembic a connection of its own (see :func:`_run`), so it gives no ``url``:
    the password never lands in Alembic's config. With ``url`` (for Alembic's own commands,
    which build an engine from ``sqlalchemy.url``) a ``%`` is escaped, as configparser's
    interpolation needs (a URL-encoded password, a file path with ``%``).
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        full = normalize_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", full.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _run(url: str, work: str, revision: str | None = None) -> str | None:
    """Run one Alembic operation on a connection of our own engine (with its SQLite pragmas)."""
    cfg = alembic_config()  # the connection is handed in below; no URL in the config
    engine = create_engine(url)
    current: str | None = None

    def operate(connection: Connection) -> None:
        nonlocal current
        if connection.dialect.name == "postgresql":
            # Several instances starting at once: one migrates, the others wait and find head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        if work == "upgrade":
            command.upgrade(cfg, revision or "head")
        elif work == "downgrade":
            command.downgrade(cfg, revision or "-1")
        current = MigrationContext.configure(connection).get_current_revision()

    try:
        async with engine.begin() as connection:
            await connection.run_sync(operate)
    except (SQLAlchemyError, OSError) as exc:  # OSError: e.g. a server refusing connections
        raise StoreError(f"database {work} failed: {exc.__class__.__name__}: {exc}") from None
    except CommandError as exc:  # Alembic's: an unknown revision, most likely
        raise StoreError(f"database {work} failed: {exc}") from None
    finally:
        await engine.dispose()
    return current


async def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the schema to ``revision`` (head by default); returns the revision now current."""
    current = await _run(url, "upgrade", revision)
    # Where the data lives (the password hidden, also a ?password= one): an operator's first
    # question on a new machine.
    shown = masked_url(normalize_url(url).render_as_string(hide_password=False))
    log.info("database %s: schema at %s", shown, current)
    return current


async def downgrade(url: str, revision: str) -> str | None:
    """Take the schema back to ``revision`` ("base" removes every table)."""
    return await _run(url, "downgrade", revision)


async def current_revision(url: str) -> str | None:
    """The revision the database is at; None for an empty database."""
    return await _run(url, "current")
