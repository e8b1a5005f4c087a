"""The bot as a process: killed mid-burst it loses nothing; told to stop it finishes first.

``python -m bot.cli run telegram`` runs as in production, in its own process, against the fake
Bot API served by the test on 127.0.0.1, with a SQLite file and a private TMPDIR in tmp_path.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skimage import data as skdata

from core.store import migrate
from tests.bot.conftest import OFFLINE_SPOTIFY
from tests.conftest import REPO_ROOT
from tests.fakes.telegram_api import ApiCall, FakeTelegramAPI, user

START_WAIT = 180.0  # seconds: a cold start (imports, models, catalog import) on a busy machine
WAIT = 120.0
SENDS = ("sendMessage", "sendPhoto", "sendDocument")


def jpeg(rgb: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def selfie() -> bytes:
    return jpeg(skdata.astronaut())


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


def bot_env(tmp_path: Path, music_dir: Path, fake: FakeTelegramAPI) -> dict[str, str]:
    """Production settings but for: the fake Bot API, a SQLite file, folders in tmp_path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MOODLIFT_") or k.startswith("MOODLIFT_MODELS_")
    }
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(
        {
            "MOODLIFT_TELEGRAM_TOKEN": fake.token,
            "MOODLIFT_TELEGRAM_API_URL": fake.base_url,
            "MOODLIFT_TELEGRAM_FILE_URL": fake.base_file_url,
            "MOODLIFT_TELEGRAM_POLL_TIMEOUT": "1",
            "MOODLIFT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}",
            "MOODLIFT_CATALOG_SOURCES": str(music_dir / "data_moods.csv"),
            "MOODLIFT_LIMITS_PHOTOS_PER_MINUTE": "1000",
            "MOODLIFT_PATHS_DATA_DIR": str(tmp_path / "data"),
            "MOODLIFT_PATHS_CACHE_DIR": str(tmp_path / "cache"),
            "MOODLIFT_SPOTIFY_API_URL": OFFLINE_SPOTIFY.api_url,
            "MOODLIFT_SPOTIFY_TOKEN_URL": OFFLINE_SPOTIFY.token_url,
            "MOODLIFT_SPOTIFY_OEMBED_URL": OFFLINE_SPOTIFY.oembed_url,
            "MOODLIFT_SPOTIFY_TIMEOUT": "0.5",
            "MOODLIFT_LOGGING_LEVEL": "INFO",
            "TMPDIR": str(tmp_path / "tmp"),
        }
    )
    return env


async def start_bot(env: dict[str, str], log: Path, fake: FakeTelegramAPI) -> Any:
    """Start ``moodlift run telegram``; return once it polls (after the calls seen so far)."""
    polls = len(fake.calls_to("getUpdates"))
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "telegram",
            env=env, cwd=REPO_ROOT, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        await fake.wait_for("getUpdates", count=polls + 1, within=START_WAIT)
    except AssertionError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the bot did not start; its log:\n{tail(log)}") from None
    return process


def tail(log: Path) -> str:
    """The end of the bot's log, for failure messages."""
    return log.read_text(errors="replace")[-3000:]


def is_card(call: ApiCall) -> bool:
    """A song card that reached the fake (and so a user)."""
    return (
        call.method == "sendPhoto"
        and "_message_id" in call.params
        and any("url" in b for b in call.buttons)
    )


def cards(fake: FakeTelegramAPI, chat_id: int | None = None) -> list[ApiCall]:
    return [c for c in fake.calls_to("sendPhoto", chat_id=chat_id) if is_card(c)]


def track_of(card: ApiCall) -> str:
    (url,) = [b["url"] for b in card.buttons if "url" in b]
    return url.rsplit("/", 1)[-1]


def delivered(db: Path) -> set[tuple[str, str]]:
    """(Telegram user id, track id) of every delivery in the database."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT users.platform_user_id, deliveries.track_id FROM deliveries "
            "JOIN users ON users.id = deliveries.user_id"
        ).fetchall()
    return {(str(u), str(t)) for u, t in rows}


async def test_sigkill_mid_burst_loses_nothing_and_sigterm_finishes_the_work_in_flight(
    tmp_path: Path, music_dir: Path, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    env = bot_env(tmp_path, music_dir, fake)
    db, log = tmp_path / "bot.sqlite3", tmp_path / "bot.log"
    sizes = fake.photo_sizes(selfie)
    people = [user(3000 + i, f"User{i}") for i in range(6)]

    bot = await start_bot(env, log, fake)
    try:
        for who in people:  # everyone has a reading, so every /more below is a card
            fake.send_photo(who, b"", sizes=sizes)
        await fake.wait_for(is_card, count=len(people), within=WAIT)
        # The burst: a selfie and a /more, three times, from everyone at once; killed early
        # on, with room to spare: under load this test's event loop can notice the cards late
        # while the bot (its own process) races on.
        rounds = 3
        for _ in range(rounds):
            for who in people:
                fake.send_photo(who, b"", sizes=sizes)
                fake.send_command(who, "/more")
        await fake.wait_for(is_card, count=len(people) + 4, within=WAIT)
    finally:
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
    assert bot.returncode == -signal.SIGKILL
    before_kill = cards(fake)
    assert len(before_kill) < len(people) * (1 + 2 * rounds), "the burst ended before the kill"

    # Every card a user saw was committed before it was sent; the schema is whole.
    in_db = delivered(db)
    for card in before_kill:
        assert (str(card.chat_id), track_of(card)) in in_db
    url = env["MOODLIFT_DATABASE_URL"]
    assert await migrate.current_revision(url) == migrate.head_revision()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restarted, the bot answers the updates it never confirmed, and /more never repeats.
    bot = await start_bot(env, log, fake)
    try:
        alice = people[0]
        asked = [fake.send_command(alice, "/more") for _ in range(2)]
        for message in asked:
            await fake.wait_for(
                lambda c, m=message: is_card(c) and c.reply_to == m["message_id"], within=WAIT
            )
        await fake.wait_until_delivered(within=WAIT)
        for who in people:
            tracks = [track_of(c) for c in cards(fake, who["id"])]
            assert len(tracks) == len(set(tracks)), tracks  # no song twice, across the kill
        assert {(str(c.chat_id), track_of(c)) for c in cards(fake)} <= delivered(db)

        # SIGTERM while selfies are being read: they are answered, then the bot exits 0.
        in_flight = [fake.send_photo(who, b"", sizes=sizes) for who in people]
        await fake.wait_for("GET file", count=len(fake.calls_to("GET file")) + 1, within=WAIT)
        bot.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.wait(), WAIT) == 0, tail(log)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    fetched = [m for m in in_flight if _update_fetched(fake, m)]
    assert fetched  # at least the one being read
    for message in fetched:
        replies = [
            c
            for c in fake.calls_to(*SENDS)
            if c.reply_to == message["message_id"] and c.chat_id == message["chat"]["id"]
        ]
        assert len(replies) == 1 and "_message_id" in replies[0].params
    text = tail(log)
    assert "Traceback" not in log.read_text(), text
    assert "stopping: finishing work in flight" in text
    secret = fake.token.split(":", 1)[1]
    assert "HTTP Request" in log.read_text()  # httpx logged every Bot API URL ...
    assert secret not in log.read_text()  # ... with the token scrubbed


def _update_fetched(fake: FakeTelegramAPI, message: dict[str, Any]) -> bool:
    """Whether getUpdates handed the bot the update carrying ``message``."""
    return any(
        u.get("message", {}).get("message_id") == message["message_id"]
        and u["message"]["chat"]["id"] == message["chat"]["id"]
        for u in fake.delivered_updates
    )
