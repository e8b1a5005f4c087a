"""`moodlift run` with no bot token: prepares everything, says what to do next, exits 0."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.cli import main


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in ("MOODLIFT_TELEGRAM_TOKEN", "MOODLIFT_DISCORD_TOKEN", "MOODLIFT_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MOODLIFT_PATHS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOODLIFT_PATHS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MOODLIFT_SPOTIFY_OEMBED_URL", "http://127.0.0.1:9/oembed")
    return tmp_path / "data" / "moodlift.sqlite3"


def test_run_without_tokens_imports_and_classifies_the_catalog(
    local_env: Path, music_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """The README's first command on a machine with the shared data and no internet: the
    default (pinned URL) sources are found there by their digests, nothing is downloaded."""
    monkeypatch.delenv("MOODLIFT_CATALOG_SOURCES", raising=False)
    monkeypatch.setenv("MOODLIFT_SHARED_DATA", str(music_dir.parent))
    with caplog.at_level("INFO", logger="data.catalog_sources"):
        assert main(["run"]) == 0
    assert "downloaded" not in caplog.text
    assert caplog.text.count("the pinned file of https://raw.githubusercontent.com/") == 2
    assert "no bot token is configured" in capsys.readouterr().out
    with sqlite3.connect(local_env) as db:
        by_source = dict(db.execute("SELECT mood_source, count(*) FROM tracks GROUP BY 1"))
    assert by_source == {"label": 686, "model": 6365}


def test_run_offline_with_an_unreachable_catalog_still_starts(
    local_env: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    monkeypatch.setenv("MOODLIFT_CATALOG_SOURCES", "http://127.0.0.1:9/data_moods.csv")
    assert main(["run"]) == 0
    assert "no bot token is configured" in capsys.readouterr().out
    assert "no song catalog yet" in caplog.text


def test_run_names_the_missing_token_and_unknown_platforms(local_env: Path, capsys) -> None:
    assert main(["run", "telegram"]) == 1
    assert "MOODLIFT_TELEGRAM_TOKEN" in capsys.readouterr().err
    assert main(["run", "irc"]) == 1
    assert "unknown platform 'irc'" in capsys.readouterr().err
