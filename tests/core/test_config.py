from __future__ import annotations

import logging
import os
import subprocess
import sys
import tomllib
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from core.config import DEFAULT_CATALOG_SOURCES, Secret, Settings, load_settings
from core.errors import ConfigError
from tests.conftest import REPO_ROOT


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "moodlift.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(env={})
    assert settings.source is None
    assert settings.telegram.token is None
    assert settings.limits.max_image_bytes == 20 * 1024 * 1024
    assert settings.limits.max_pixels == 40_000_000
    assert settings.recommender.default_mode == "lift"
    assert settings.catalog.sources == DEFAULT_CATALOG_SOURCES
    assert all(s.sha256 and s.is_url for s in settings.catalog.sources)
    assert settings.models.emotion_path == REPO_ROOT / "models" / "emotion.tflite"
    assert settings.database_url == (
        f"sqlite+aiosqlite:///{settings.paths.data_dir / 'moodlift.sqlite3'}"
    )


def test_file_values_and_relative_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [limits]
        photos_per_minute = 3
        [recommender]
        default_mode = "MATCH"
        [paths]
        data_dir = "state"
        [catalog]
        sources = ["songs.csv", "https://example.org/a.csv#sha256=%s"]
        [spotify]
        timeout = 2
        """
        % ("ab" * 32),
    )
    settings = load_settings(path, env={})
    assert settings.source == path
    assert settings.limits.photos_per_minute == 3
    assert settings.recommender.default_mode == "match"
    assert settings.paths.data_dir == tmp_path / "state"
    assert settings.catalog.sources[0].location == str(tmp_path / "songs.csv")
    assert settings.catalog.sources[1].sha256 == "ab" * 32
    assert settings.spotify.timeout == 2.0


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[telegram]\napi_url = "http://127.0.0.1:1/bot"\n')
    env = {
        "MOODLIFT_CONFIG": str(path),
        "MOODLIFT_TELEGRAM_API_URL": "http://127.0.0.1:2/bot",
        "MOODLIFT_TELEGRAM_TOKEN": "123:secret-token",
        "MOODLIFT_SPOTIFY_CLIENT_SECRET": "shh",
        "MOODLIFT_DISCORD_TEST_GUILD_ID": "42",
        "MOODLIFT_DISCORD_EPHEMERAL": "yes",
        "MOODLIFT_DATABASE_URL": "sqlite+aiosqlite:////tmp/x.sqlite3",
        "MOODLIFT_CATALOG_SOURCES": "/data/a.csv, /data/b.csv#sha256=" + "0" * 64,
        "MOODLIFT_SHARED_DATA": "/not/a/setting",  # other tools' variables are left alone
    }
    settings = load_settings(env=env)
    assert settings.source == path
    assert settings.telegram.api_url == "http://127.0.0.1:2/bot"
    assert settings.telegram.token == Secret("123:secret-token")
    assert settings.discord.test_guild_id == 42
    assert settings.discord.ephemeral is True
    assert settings.database_url == "sqlite+aiosqlite:////tmp/x.sqlite3"
    assert [s.location for s in settings.catalog.sources] == ["/data/a.csv", "/data/b.csv"]
    assert settings.catalog.sources[1].sha256 == "0" * 64


def test_secrets_never_show() -> None:
    settings = load_settings(
        env={"MOODLIFT_TELEGRAM_TOKEN": "123:very-secret", "MOODLIFT_DISCORD_TOKEN": "d-secret"}
    )
    assert "very-secret" not in repr(settings)
    assert "d-secret" not in str(settings)
    assert settings.telegram.token is not None
    assert settings.telegram.token.get() == "123:very-secret"
    assert repr(settings.telegram.token) == "Secret('**********')"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[limits]\nmax_pixels = "many"',
            "limits.max_pixels = 'many' is invalid: expected an integer",
        ),
        ("[limits]\nworkers = 0", "limits.workers = 0 is invalid: expected a number > 0"),
        ("[limits]\nqueue_size = true", "limits.queue_size = True is invalid: expected an integer"),
        ('[recommender]\ndefault_mode = "up"', "expected one of lift, match"),
        ('[telegram]\napi_url = "ftp://x"', "telegram.api_url = 'ftp://x' is invalid"),
        ("[database]\nurl = 'not a url'", "expected a SQLAlchemy URL"),
        ('[catalog]\nsources = ["a.csv#md5=1"]', "catalog.sources"),
        ("[limits]\nmax_pixel = 5", "unknown setting limits.max_pixel"),
        ("[telgram]\ntoken = 'x'", "unknown section [telgram]"),
        ("limits = 3", "must be a [limits] table"),
        ("[limits\n", "is not valid TOML"),
    ],
)
def test_bad_file_values_name_key_value_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text), env={})
    assert expected in str(error.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MOODLIFT_LIMITS_MAX_IMAGE_BYTES": "20MB"}, "MOODLIFT_LIMITS_MAX_IMAGE_BYTES = '20MB'"),
        ({"MOODLIFT_DISCORD_EPHEMERAL": "maybe"}, "expected true or false"),
        ({"MOODLIFT_TELEGRAM_TOKN": "x"}, "unknown setting MOODLIFT_TELEGRAM_TOKN"),
        ({"MOODLIFT_SPOTIFY_TIMEOUT": "-1"}, "expected a number > 0"),
        ({"MOODLIFT_TELEGRAM_MODE": "push"}, "expected one of polling, webhook"),
        ({"MOODLIFT_TELEGRAM_WEBHOOK_PATH": "telegram"}, "a URL path starting with /"),
        ({"MOODLIFT_TELEGRAM_WEBHOOK_PORT": "70000"}, "a port from 0 to 65535"),
        (
            {"MOODLIFT_TELEGRAM_WEBHOOK_SECRET": "has spaces!"},
            "MOODLIFT_TELEGRAM_WEBHOOK_SECRET = '**********' is invalid",
        ),
        ({"MOODLIFT_DISCORD_SHARD_IDS": "0,x"}, "expected a list of integers"),
        ({"MOODLIFT_DISCORD_TEST_GUILD_ID": "-5"}, "expected a server id (an integer > 0)"),
    ],
)
def test_bad_environment_values(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(env=env)
    assert expected in str(error.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"MOODLIFT_CONFIG": str(tmp_path / "nope.toml")})


def test_warns_when_others_can_read_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="core.config")
    token = '[telegram]\ntoken = "123:abc"\n'
    load_settings(write(tmp_path, token, mode=0o600), env={})
    assert not caplog.records
    load_settings(write(tmp_path, "[logging]\nlevel = 'INFO'\n", mode=0o644), env={})
    assert not caplog.records  # nothing secret in it: nothing to say
    load_settings(write(tmp_path, token, mode=0o644), env={})
    assert "readable by other users" in caplog.text and "abc" not in caplog.text
    caplog.clear()
    url = "[database]\nurl = 'postgresql+asyncpg://bot:pw@db/moodlift'\n"
    load_settings(write(tmp_path, url, mode=0o644), env={})
    assert "readable by other users" in caplog.text and "pw" not in caplog.text


def test_example_file_documents_every_setting_and_loads() -> None:
    example = REPO_ROOT / "config.example.toml"
    text = example.read_text()
    data = tomllib.loads(text)
    for name, section in typing.get_type_hints(Settings).items():
        if name == "source":
            continue
        assert f"[{name}]" in text
        for setting in fields(section):
            assert f"\n{setting.name} =" in text or f"\n# {setting.name} =" in text, (
                f"{name}.{setting.name} is not documented in config.example.toml"
            )
    settings = load_settings(example, env={})
    assert settings.catalog.sources == DEFAULT_CATALOG_SOURCES
    assert settings.limits == Settings().limits
    assert data["recommender"]["default_mode"] == "lift"


def test_loading_the_configuration_does_not_import_pandas_or_tensorflow() -> None:
    """Every command loads the settings first; pandas alone cost ~35 MB and ~0.4 s of start-up
    (through the catalog reader's default folder)."""
    code = "import sys, core.config; print(sorted({'pandas', 'tensorflow'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"
