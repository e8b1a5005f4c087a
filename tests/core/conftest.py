"""Fixtures for core tests: a store on a fresh database (``db_url``: SQLite and PostgreSQL),
and small real CSV catalogs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core.store import Store


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, str, list[str]], Path]:
    """Write a CRLF CSV (as the published files are) into tmp_path."""

    def write(name: str, header: str, lines: list[str]) -> Path:
        path = tmp_path / name
        path.write_bytes(("\r\n".join([header, *lines]) + "\r\n").encode())
        return path

    return write


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()
