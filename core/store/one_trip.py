"""aiosqlite with one trip to its thread per statement, for SQLAlchemy's aiosqlite dialect.

aiosqlite runs every sqlite3 call on a thread of its own, and SQLAlchemy's adapter makes four
such calls per statement (open a cursor, execute, fetch the rows, close), each a hand-over
between the event loop and that thread: 16 of them for a photo's store work, and on a busy
machine each one waits for a time slice. :class:`OneTripConnection` runs the four together:
its cursors execute, fetch and close in one call on the thread and keep what SQLAlchemy reads
afterwards (rows, description, rowcount, lastrowid). The rows are all fetched at once, as
SQLAlchemy's adapter does anyway for every statement but server-side cursors (which the
store never asks for); commit, rollback and the rest stay aiosqlite's.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from threading import Thread
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL

_Outcome = tuple[list[Any], Any, int, int | None]  # rows, description, rowcount, lastrowid


def connector(url: URL) -> Callable[[], OneTripConnection]:
    """An ``async_creator`` for ``create_async_engine``: the connection SQLAlchemy's own
    aiosqlite dialect would open for ``url`` (same sqlite3 arguments), one trip a statement."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(url)

    def connect() -> OneTripConnection:
        connection = OneTripConnection(partial(sqlite3.connect, *args, **kwargs), 64)
        # As SQLAlchemy's dialect does, so an open connection never holds up the exit; before
        # aiosqlite 0.22 the connection was itself the thread.
        thread = connection if isinstance(connection, Thread) else connection._thread
        thread.daemon = True
        return connection  # SQLAlchemy awaits it: that starts the thread and connects

    return connect


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors cost one trip to its thread per statement."""

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        """A cursor at no cost: it opens a sqlite3 cursor only within each statement's trip."""
        return OneTripCursor(self)


class OneTripCursor:
    """The part of aiosqlite's cursor that SQLAlchemy uses, with the results kept here."""

    arraysize = 1

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> OneTripCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> OneTripCursor:
        conn = self._connection._conn
        self._keep(await self._connection._execute(_execute, conn, sql, parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        conn = self._connection._conn
        self._keep(await self._connection._execute(_executemany, conn, sql, parameters))
        return self

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()  # the sqlite3 cursor was closed in its trip

    def _keep(self, outcome: _Outcome) -> None:
        rows, self.description, self.rowcount, self.lastrowid = outcome
        self._rows = deque(rows)


def _execute(conn: sqlite3.Connection, sql: str, parameters: Sequence[Any] | None) -> _Outcome:
    """On aiosqlite's thread: the statement, its rows and what the cursor says about it."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _executemany(conn: sqlite3.Connection, sql: str, parameters: Iterable[Any]) -> _Outcome:
    cursor = conn.cursor()
    try:
        cursor.executemany(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.description, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()
