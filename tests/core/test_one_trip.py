"""The SQLite driver under the store: one trip to aiosqlite's thread per statement, and
everything SQLAlchemy reads from a cursor still there (rows, rowcount, ids, errors)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from core.store.engine import create_engine
from core.store.one_trip import OneTripConnection


async def test_statements_rows_counts_and_errors_through_one_trip(tmp_path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'trips.sqlite3'}")
    try:
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            assert isinstance(raw.driver_connection, OneTripConnection)
            trips = 0
            execute = raw.driver_connection._execute

            async def counted(fn, *args, **kwargs):  # the real trip, counted
                nonlocal trips
                trips += 1
                return await execute(fn, *args, **kwargs)

            raw.driver_connection._execute = counted
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
            assert trips == 1
            many = await conn.execute(
                text("INSERT INTO t (name) VALUES (:name)"), [{"name": "a"}, {"name": "b"}]
            )
            assert many.rowcount == 2
            one = await conn.execute(text("INSERT INTO t (name) VALUES ('c')"))
            assert one.lastrowid == 3
            back = await conn.execute(text("INSERT INTO t (name) VALUES ('d') RETURNING id, name"))
            assert back.all() == [(4, "d")]
            trips = 0
            rows = await conn.execute(
                text("SELECT name FROM t WHERE id > :id ORDER BY id"), {"id": 1}
            )
            assert trips == 1  # not four: cursor, execute, fetch, close
            assert rows.keys() == ["name"]
            assert rows.scalars().all() == ["b", "c", "d"]
            assert (await conn.execute(text("SELECT name FROM t WHERE id = 99"))).first() is None
            with pytest.raises(IntegrityError):
                await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
            with pytest.raises(OperationalError):
                await conn.execute(text("SELECT nothing FROM nowhere"))
    finally:
        await engine.dispose()
