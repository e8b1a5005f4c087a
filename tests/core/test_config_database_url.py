"""The database URL carries a password: settings show it masked (repr, error messages) and
hand the real one only to the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import load_settings, masked_url
from core.errors import ConfigError

PASSWORD = "s3cr%40t-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://bob:s3cr%40t@db:5432/mood", "postgresql+asyncpg://bob:***@db:5432/mood"),
        ("postgresql://bob:p@ss@db/mood", "postgresql://bob:***@db/mood"),  # an unescaped @
        ("postgresql://:pw@db/mood", "postgresql://:***@db/mood"),
        ("postgres ql://bob:pw@db/mood", "postgres ql://bob:***@db/mood"),  # does not parse
        ("bob:pw@db/mood", "bob:***@db/mood"),  # no scheme at all
        ("postgresql+asyncpg:///mood?host=/run&password=pw&x=1", "postgresql+asyncpg:///mood?host=/run&password=***&x=1"),
        ("postgresql://bob@db/mood", "postgresql://bob@db/mood"),  # nothing to hide
        ("postgresql://db:5432/mood", "postgresql://db:5432/mood"),
        ("sqlite+aiosqlite:////srv/a:b@c/mood.sqlite3", "sqlite+aiosqlite:////srv/a:b@c/mood.sqlite3"),
        ("not a url", "not a url"),
    ],
)  # fmt: skip
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_repr_of_the_settings_masks_the_password() -> None:
    url = f"postgresql+asyncpg://bob:{PASSWORD}@db.example:5432/mood"
    settings = load_settings(env={"MOODLIFT_DATABASE_URL": url})
    assert settings.database_url == url  # the store gets the real one
    for shown in (repr(settings), str(settings), repr(settings.database)):
        assert PASSWORD not in shown and "s3cr" not in shown
        assert "postgresql+asyncpg://bob:***@db.example:5432/mood" in shown
    assert repr(settings.database) == (
        "DatabaseSettings(url='postgresql+asyncpg://bob:***@db.example:5432/mood', "
        "echo=False, busy_timeout_ms=5000)"
    )
    assert repr(load_settings(env={}).database) == (
        "DatabaseSettings(url=None, echo=False, busy_timeout_ms=5000)"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgres ql://bob:{PASSWORD}@db/mood",  # a space in the scheme: make_url refuses it
        f"bob:{PASSWORD}@db/mood",  # the scheme forgotten
    ],
)
def test_a_malformed_url_is_reported_without_its_password(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env={"MOODLIFT_DATABASE_URL": url})
    message = str(error.value)
    assert "MOODLIFT_DATABASE_URL" in message and "expected a SQLAlchemy URL" in message
    assert "s3cr" not in message and "bob:***@db/mood" in message

    path = tmp_path / "moodlift.toml"
    path.write_text(f"[database]\nurl = '{url}'\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert "database.url" in str(error.value) and "s3cr" not in str(error.value)


def test_the_store_refuses_a_malformed_url_without_showing_its_password() -> None:
    from core.errors import StoreError
    from core.store import create_engine

    with pytest.raises(StoreError) as error:
        create_engine(f"postgres ql://bob:{PASSWORD}@db/mood")
    assert "s3cr" not in str(error.value) and "bob:***@db/mood" in str(error.value)


@pytest.mark.parametrize("folder", ["100%db", "what?", "a#b", "a b"])
async def test_the_default_sqlite_file_keeps_a_data_dir_with_url_characters(
    tmp_path: Path, folder: str
) -> None:
    """The default URL is built from paths.data_dir: a %, ? or # there is part of the path."""
    from core.store import Store

    data_dir = tmp_path / folder
    settings = load_settings(env={"MOODLIFT_PATHS_DATA_DIR": str(data_dir)})
    async with await Store.open(settings) as store:
        assert (await store.catalog_counts()).total == 0
    assert (data_dir / "moodlift.sqlite3").is_file()
    assert os.listdir(tmp_path) == [folder]
