"""The migrations create exactly the ORM's schema, and go down and up again, on a real SQLite
file and on a real PostgreSQL server (``db_url`` runs each test on both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import URL, Connection, bindparam, inspect, select, text
from sqlalchemy.engine import make_url

from core.errors import StoreError
from core.store import create_engine, current_revision, downgrade, head_revision, upgrade
from core.store.migrate import alembic_config
from core.store.schema import Base, CatalogImport, UTCDateTime

TABLES = {"users", "tracks", "deliveries", "detections", "ratings", "catalog_imports"}


async def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version", "sqlite_sequence"}


async def test_upgrade_downgrade_upgrade(db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the scripts are found by package path, not the cwd
    assert await current_revision(db_url) is None
    assert await upgrade(db_url) == head_revision()
    assert await tables(db_url) == TABLES
    assert await upgrade(db_url) == head_revision()  # idempotent
    assert await downgrade(db_url, "base") is None
    assert await tables(db_url) == set()
    assert await upgrade(db_url) == head_revision()
    assert await tables(db_url) == TABLES


async def test_instances_starting_together_upgrade_once(postgres_url: str) -> None:
    """Several instances upgrading one empty PostgreSQL database at the same moment take turns
    on an advisory lock and all end at head. (SQLite serves one instance.)"""
    revisions = await asyncio.gather(*(upgrade(postgres_url) for _ in range(4)))
    assert revisions == [head_revision()] * 4
    assert await tables(postgres_url) == TABLES


async def test_head_matches_the_orm_models(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_sqlite_file_in_a_new_folder(tmp_path: Path) -> None:
    file = tmp_path / "nested" / "moodlift.sqlite3"
    assert await upgrade(f"sqlite+aiosqlite:///{file}") == head_revision()
    assert file.is_file()


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'moodlift.sqlite3'}"
    await upgrade(url)
    engine = create_engine(url, busy_timeout_ms=1234)
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 1234
    finally:
        await engine.dispose()


async def test_a_percent_in_the_url_is_no_interpolation(tmp_path: Path) -> None:
    """A ``%`` in the URL (a path here; a URL-encoded password alike) used to reach Alembic's
    configparser, which took it for interpolation and stopped the start-up."""
    file = tmp_path / "100%" / "mood%db.sqlite3"
    url = URL.create("sqlite+aiosqlite", database=str(file)).render_as_string()  # %db: "%25db"
    assert await upgrade(url) == head_revision()
    assert await current_revision(url) == head_revision()
    assert await tables(url) == TABLES
    assert file.is_file()


def test_the_apps_alembic_config_holds_no_url_and_a_given_one_round_trips() -> None:
    assert alembic_config().get_main_option("sqlalchemy.url") is None
    url = "postgresql+asyncpg://bob:p%40ss%25@db.example/mood"
    assert alembic_config(url).get_main_option("sqlalchemy.url") == url


def test_plain_alembic_command_with_a_percent_in_the_path(tmp_path: Path) -> None:
    url = URL.create(
        "sqlite+aiosqlite", database=str(tmp_path / "50%off.sqlite3")
    ).render_as_string()
    command.upgrade(alembic_config(url), "head")
    assert asyncio.run(tables(url)) == TABLES


def test_plain_alembic_command_runs_env_with_its_own_engine(db_url: str) -> None:
    """``alembic``'s own entry (no connection handed in) takes the async path of env.py."""
    config = alembic_config(db_url)
    command.upgrade(config, "head")
    assert asyncio.run(tables(db_url)) == TABLES
    command.downgrade(config, "base")
    assert asyncio.run(tables(db_url)) == set()


async def test_ratings_arrive_in_0002_and_leave_without_touching_older_data(db_url: str) -> None:
    assert await upgrade(db_url, "0001") == "0001"
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (platform, platform_user_id, created_at) "
                    "VALUES ('telegram', '1', CURRENT_TIMESTAMP)"
                )
            )
        assert await upgrade(db_url) == head_revision()
        assert "ratings" in await tables(db_url)
        assert await downgrade(db_url, "0001") == "0001"
        assert await tables(db_url) == TABLES - {"ratings", "catalog_imports"}
        async with engine.connect() as connection:
            users = await connection.execute(text("SELECT platform_user_id FROM users"))
            assert users.all() == [("1",)]
    finally:
        await engine.dispose()


_TRACK = (
    "INSERT INTO tracks (id, name, artist, danceability, energy, valence, acousticness, "
    "instrumentalness, liveness, speechiness, loudness, tempo, key, time_signature, source, "
    "imported_at) VALUES (:id, 'Song', 'Artist', 0.5, 0.5, 0.5, 0.5, 0, 0.1, 0.05, -7, 120, 5, "
    "4, :source, :at)"
)


async def test_catalog_imports_arrive_in_0003_with_the_sources_tracks_name(db_url: str) -> None:
    """A database from before 0003 gets an import record for each source a track names (the
    start-up import's old rule), dated by its newest track; down again, the tracks stay."""
    assert await upgrade(db_url, "0002") == "0002"
    engine = create_engine(db_url)
    early = datetime(2026, 11, 1, 12, tzinfo=UTC)
    late = datetime(2026, 11, 2, 12, tzinfo=UTC)
    try:
        async with engine.begin() as connection:
            for n, source, at in ((1, "a.csv", early), (2, "a.csv", late), (3, "b.csv", early)):
                await connection.execute(
                    text(_TRACK).bindparams(bindparam("at", type_=UTCDateTime)),
                    {"id": f"T{n:0>21}", "source": source, "at": at},
                )
        assert await upgrade(db_url, "0003") == "0003"
        assert "catalog_imports" in await tables(db_url)
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(
                    CatalogImport.source,
                    CatalogImport.sha256,
                    CatalogImport.rows_read,
                    CatalogImport.imported_at,
                ).order_by(CatalogImport.source)
            )
            assert rows.all() == [("a.csv", None, None, late), ("b.csv", None, None, early)]
        assert await downgrade(db_url, "0002") == "0002"
        assert await tables(db_url) == TABLES - {"catalog_imports"}
        async with engine.connect() as connection:
            count = await connection.scalar(text("SELECT COUNT(*) FROM tracks"))
            assert count == 3
        assert await upgrade(db_url) == head_revision()
    finally:
        await engine.dispose()


async def test_an_upgrade_says_where_the_database_is(tmp_path: Path, caplog) -> None:
    """An operator's first question on a new machine: where is my data?"""
    path = tmp_path / "moodlift.sqlite3"
    with caplog.at_level("INFO", logger="core.store.migrate"):
        await upgrade(f"sqlite+aiosqlite:///{path}")
    assert f"database sqlite+aiosqlite:///{path}: schema at {head_revision()}" in caplog.text


async def test_a_password_in_the_query_is_hidden_in_the_log(postgres_url: str, caplog) -> None:
    """asyncpg takes a password as ``?password=`` too; SQLAlchemy's own masking hides only the
    one in the user part."""
    parsed = make_url(postgres_url)
    password = parsed.password
    assert password
    in_query = parsed.set(password=None).update_query_dict({"password": password})
    with caplog.at_level("INFO", logger="core.store.migrate"):
        assert await upgrade(in_query.render_as_string(hide_password=False)) == head_revision()
    assert "password=***" in caplog.text
    assert f"password={password}" not in caplog.text


def test_an_unusable_database_url_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError) as refused:
        create_engine("postgresql+nosuchdriver://bob@db.example/mood?password=hunter2")
    assert "hunter2" not in str(refused.value)
    assert "password=***" in str(refused.value)
