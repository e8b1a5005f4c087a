"""The migrations create exactly the ORM's schema, and go down and up again on a real file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from core.store import create_engine, current_revision, downgrade, head_revision, upgrade
from core.store.migrate import alembic_config
from core.store.schema import Base

TABLES = {"users", "tracks", "deliveries", "detections"}


def tables(file: Path) -> set[str]:
    with sqlite3.connect(file) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows} - {"alembic_version", "sqlite_sequence"}


def url_of(file: Path) -> str:
    return f"sqlite+aiosqlite:///{file}"


async def test_upgrade_downgrade_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the scripts are found by package path, not the cwd
    file = tmp_path / "nested" / "moodlift.sqlite3"
    assert await current_revision(url_of(file)) is None
    assert await upgrade(url_of(file)) == head_revision()
    assert tables(file) == TABLES
    assert await upgrade(url_of(file)) == head_revision()  # idempotent
    assert await downgrade(url_of(file), "base") is None
    assert tables(file) == set()
    assert await upgrade(url_of(file)) == head_revision()
    assert tables(file) == TABLES


async def test_head_matches_the_orm_models(tmp_path: Path) -> None:
    file = tmp_path / "moodlift.sqlite3"
    await upgrade(url_of(file))
    engine = create_engine(url_of(file))

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    file = tmp_path / "moodlift.sqlite3"
    await upgrade(url_of(file))
    engine = create_engine(url_of(file), busy_timeout_ms=1234)
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 1234
    finally:
        await engine.dispose()


def test_plain_alembic_command_runs_env_with_its_own_engine(tmp_path: Path) -> None:
    """``alembic``'s own entry (no connection handed in) takes the async path of env.py."""
    file = tmp_path / "moodlift.sqlite3"
    config = alembic_config(url_of(file))
    command.upgrade(config, "head")
    assert tables(file) == TABLES
    command.downgrade(config, "base")
    assert tables(file) == set()
