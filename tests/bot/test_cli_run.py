"""`moodlift run` with no bot token: prepares everything, says what to do next, exits 0."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    said = capsys.readouterr().out
    assert said.startswith("Ready (4,832 songs to serve), but no bot token is configured")
    with sqlite3.connect(local_env) as db:
        by_source = dict(db.execute("SELECT mood_source, count(*) FROM tracks GROUP BY 1"))
    assert by_source == {"label": 686, "model": 6365}


def test_run_offline_with_an_unreachable_catalog_still_starts(
    local_env: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    monkeypatch.setenv("MOODLIFT_CATALOG_SOURCES", "http://127.0.0.1:9/data_moods.csv")
    assert main(["run"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("Ready (no songs to serve yet") and "no bot token is configured" in said
    assert "no song catalog yet" in caplog.text


def test_run_names_the_missing_token_and_unknown_platforms(local_env: Path, capsys) -> None:
    assert main(["run", "telegram"]) == 1
    assert "MOODLIFT_TELEGRAM_TOKEN" in capsys.readouterr().err
    assert main(["run", "irc"]) == 1
    assert "unknown platform 'irc'" in capsys.readouterr().err


class _Refusing(BaseHTTPRequestHandler):
    """A Bot API / Discord REST stand-in that refuses every token, as both do (HTTP 401)."""

    def _refuse(self) -> None:
        body = json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SECRET = "123456:SECRETxyzABCdefTOKEN"


@pytest.mark.parametrize("where", ["refusing", "unreachable"])
def test_run_with_a_refused_or_unreachable_telegram_says_so_in_one_line(
    where: str, local_env: Path, refusing_server: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A rejected token (python-telegram-bot's error quotes it) or no network: one line on
    stderr that says which, no traceback, and never the token."""
    base = refusing_server if where == "refusing" else "http://127.0.0.1:9"
    monkeypatch.setenv("MOODLIFT_CATALOG_SOURCES", "http://127.0.0.1:9/data_moods.csv")
    monkeypatch.setenv("MOODLIFT_TELEGRAM_TOKEN", SECRET)
    monkeypatch.setenv("MOODLIFT_TELEGRAM_API_URL", f"{base}/bot")
    assert main(["run"]) == 1
    out = capsys.readouterr()
    (line,) = out.err.strip().splitlines()
    expected = "token was refused" if where == "refusing" else "cannot reach the Bot API"
    assert line.startswith("moodlift: error: telegram: ") and expected in line
    assert SECRET not in out.err + out.out and "SECRET" not in line


@pytest.mark.parametrize("where", ["refusing", "unreachable"])
def test_run_with_a_refused_or_unreachable_discord_says_so_in_one_line(
    where: str, local_env: Path, refusing_server: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import discord.http

    base = refusing_server if where == "refusing" else "http://127.0.0.1:9"
    monkeypatch.setattr(discord.http.Route, "BASE", f"{base}/api/v10")
    monkeypatch.setenv("MOODLIFT_CATALOG_SOURCES", "http://127.0.0.1:9/data_moods.csv")
    monkeypatch.setenv("MOODLIFT_DISCORD_TOKEN", "MTIzNDU2.SECRET.discordtoken")
    assert main(["run"]) == 1
    out = capsys.readouterr()
    (line,) = out.err.strip().splitlines()
    expected = "token was refused" if where == "refusing" else "cannot reach Discord"
    assert line.startswith("moodlift: error: discord: ") and expected in line
    assert "SECRET" not in out.err + out.out
