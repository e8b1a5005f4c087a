"""Alembic environment, async-aware.

The app passes its own connection in ``config.attributes["connection"]`` (see
``core.store.migrate``); the plain ``alembic`` command gets an engine built from
``sqlalchemy.url`` with the same SQLite pragmas.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from core.store.engine import create_engine
from core.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_configure)
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (given := config.attributes.get("connection")) is not None:
    _configure(given)
else:
    asyncio.run(_run_with_own_engine())
