"""Shared fixtures: where the read-only data sets live (``../shared`` beside the checkout), and
an empty database per test on each backend (SQLite files; PostgreSQL when a server is given)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MOODLIFT_SHARED_DATA`` or ``<repo>/../shared/data``; None when neither exists."""
    configured = os.environ.get("MOODLIFT_SHARED_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests that need it skip with a reason where it is absent."""
    found = shared_data_dir()
    if found is None:
        pytest.skip("shared data (../shared/data or MOODLIFT_SHARED_DATA) is not available")
    return found


@pytest.fixture(scope="session")
def fer2013_csv(shared_data: Path) -> Path:
    return shared_data / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def music_dir(shared_data: Path) -> Path:
    return shared_data / "music"


# --- databases: every store test runs on SQLite and on PostgreSQL ------------------------------

POSTGRES_ENV = "MOODLIFT_TEST_POSTGRES_URL"
POSTGRES_REQUIRED_ENV = "MOODLIFT_TEST_POSTGRES_REQUIRED"  # .ci/run: a skip would be a failure
BACKENDS = ("sqlite", "postgresql")


def postgres_server_url() -> str | None:
    """The PostgreSQL server the tests may use (``.ci/postgres.sh`` starts one); None: skip."""
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    server = postgres_server_url()
    if server is None:
        reason = f'no PostgreSQL server: set {POSTGRES_ENV} (eval "$(bash .ci/postgres.sh)")'
        if os.environ.get(POSTGRES_REQUIRED_ENV):
            pytest.fail(reason)
        pytest.skip(reason)
    async with fresh_postgres_database(server) as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_postgres_database(server: str) -> AsyncIterator[str]:
    """A new login role with a schema of its own on ``server`` (its default search path), so
    the yielded URL sees an empty database; both are dropped on the way out. Much faster than
    CREATE DATABASE, which copies a template (about a second each here)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from core.store import normalize_url

    admin_url = normalize_url(server)
    name = f"moodlift_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE ROLE {name} LOGIN PASSWORD '{name}'"))
            await connection.execute(text(f"GRANT {name} TO CURRENT_USER"))
            await connection.execute(text(f"CREATE SCHEMA {name} AUTHORIZATION {name}"))
        try:
            yield admin_url.set(username=name, password=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.execute(text(f"DROP SCHEMA {name} CASCADE"))
                await connection.execute(text(f"DROP ROLE {name}"))
    finally:
        await admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for an empty database, once per backend."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'moodlift.sqlite3'}"
