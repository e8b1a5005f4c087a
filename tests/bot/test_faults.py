"""Outages of the chat platforms: the bot waits, retries, logs, and never stops answering.

Telegram: the real Application against the fake Bot API, which answers chosen calls with 429
(``retry_after``), 5xx, or too slowly (a client timeout). Discord: SimCord's injected REST
errors. Behind both is the real core (SQLite file, shared catalog, real models).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import simcord
from telegram.error import TimedOut
from telegram.ext import ExtBot

from bot import telegram as telegram_adapter
from bot import wording
from bot.discord_bot import DiscordOptions, MoodLiftBot, build_client
from bot.telegram import MoodApplication
from bot.telegram_http import RetryAfterLimiter, RetryingRequest
from core import service as core_service
from core.config import LimitsSettings, Secret, Settings, TelegramSettings
from core.moods import Mode
from core.service import MoodLifter
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import ApiCall, FakeTelegramAPI, shown, user

WAIT = 120.0  # seconds; the CPU is shared with a training run
BACKOFF = 0.5  # RetryingRequest's default first pause, doubled after each failure
SENDS = ("sendMessage", "sendPhoto", "sendDocument")


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path) -> Settings:
    return service_settings(tmp_path, music_dir, LimitsSettings(photos_per_minute=100))


def delivered(call: ApiCall) -> bool:
    """The call reached the fake and created a message (not an injected failure)."""
    return "_message_id" in call.params


async def reply_to(fake: FakeTelegramAPI, message: dict[str, Any]) -> ApiCall:
    """The one delivered reply to ``message``."""
    (reply,) = await fake.wait_for(
        lambda c: c.method in SENDS and c.reply_to == message["message_id"] and delivered(c),
        within=WAIT,
    )
    return reply


# --- Telegram ----------------------------------------------------------------------------------


async def test_flood_control_waits_as_long_as_telegram_says(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    alice = user(2001, "Alice")
    fake.fail_next("sendPhoto", status=429, retry_after=1)
    card = await reply_to(fake, fake.send_photo(alice, selfie))
    (refused,) = [c for c in fake.calls_to("sendPhoto") if c.params.get("_failed_with") == 429]
    assert card.method == "sendPhoto"
    assert card.at - refused.at >= 0.95  # retry_after honoured (a lower bound, not a speed)


async def test_server_errors_are_retried_with_growing_pauses(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    alice = user(2002, "Alice")
    fake.fail_next("getFile", status=502)
    fake.fail_next("sendPhoto", status=503, times=3)  # the fourth and last attempt gets through
    card = await reply_to(fake, fake.send_photo(alice, selfie))
    attempts = fake.calls_to("sendPhoto")
    assert [c.params.get("_failed_with") for c in attempts] == [503, 503, 503, None]
    assert attempts[-1] is card
    pauses = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    for i, pause in enumerate(pauses):
        assert pause >= BACKOFF * 2**i * 0.95, pauses


async def test_when_every_retry_fails_the_failure_is_logged_and_the_bot_goes_on(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    selfie: bytes,
    caplog: pytest.LogCaptureFixture,
    db_path: Path,
) -> None:
    alice = user(2003, "Alice")
    caplog.set_level(logging.WARNING)
    fake.fail_next("sendPhoto", status=500, times=4)  # every attempt
    lost = fake.send_photo(alice, selfie)
    apology = await reply_to(fake, lost)
    assert shown(apology) == wording.SOMETHING_WENT_WRONG
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["bot.telegram"], [r.getMessage() for r in errors]
    assert errors[0].exc_info is not None
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3  # each retry was logged as a warning
    # The song never arrived: it is not in the history, nor used up.
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM detections").fetchone() == (1,)
    # The bot is still there: the next selfie gets its card.
    card = await reply_to(fake, fake.send_photo(alice, selfie))
    assert card.method == "sendPhoto"
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)


@pytest.mark.parametrize(
    ("status", "description", "sends"),
    [
        (403, "Forbidden: bot was blocked by the user", ["sendPhoto"]),
        # A group where members (the bot too) may not post: the card's text fallback fails too.
        (
            400,
            "Bad Request: not enough rights to send text messages to the chat",
            ["sendPhoto", "sendMessage"],
        ),
    ],
)
async def test_a_chat_that_refuses_the_bot_is_not_sent_an_apology(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    selfie: bytes,
    caplog: pytest.LogCaptureFixture,
    status: int,
    description: str,
    sends: list[str],
) -> None:
    """Blocked by the user, removed from the group or muted in it while reading: nothing is
    broken on our side, and an apology would be refused the same way."""
    alice = user(2006, "Alice")
    caplog.set_level(logging.INFO)
    for method in sends:
        fake.fail_next(method, status=status, description=description)
    fake.send_photo(alice, selfie)
    (refused,) = await fake.wait_for(sends[-1], within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    assert refused.params["_failed_with"] == status
    for _ in range(100):  # the handler logs once the song it could not send is withdrawn
        if any("refuses the bot" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    assert any("refuses the bot" in r.getMessage() for r in caplog.records)
    assert [c.method for c in fake.replies(alice["id"])] == sends  # and nothing after
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_photo_the_file_server_refuses_gets_an_apology(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes, db_path: Path
) -> None:
    """A 403 from the file server (an expired or foreign file link) is not the chat refusing
    the bot: the user is told something went wrong, instead of hearing nothing."""
    alice = user(2009, "Alice")
    fake.fail_next("GET file", status=403, description="Forbidden")
    apology = await reply_to(fake, fake.send_photo(alice, selfie))
    assert shown(apology) == wording.SOMETHING_WENT_WRONG
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM detections").fetchone() == (0,)
    card = await reply_to(fake, fake.send_photo(alice, selfie))  # sent again, it is read
    assert card.method == "sendPhoto"


async def test_a_card_whose_send_timed_out_is_not_called_a_failure(
    service: MoodLifter,
    fake: FakeTelegramAPI,
    selfie: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card may have arrived (it does here, late): the user is told it was slow, not broken."""
    monkeypatch.setattr(telegram_adapter, "SEND_READ_TIMEOUT", 0.5)
    telegram = TelegramSettings(
        token=Secret(fake.token), api_url=fake.base_url, file_url=fake.base_file_url
    )
    application = telegram_adapter.build_application(service, telegram)
    alice = user(2005, "Alice")
    fake.stall_next("sendPhoto", 2.0)
    async with telegram_adapter.polling(application, poll_timeout=1):
        sent = fake.send_photo(alice, selfie)
        (note,) = await fake.wait_for(
            lambda c: c.method == "sendMessage" and c.reply_to == sent["message_id"], within=WAIT
        )
        await fake.wait_for(
            lambda c: c.method == "sendPhoto" and c.reply_to == sent["message_id"], within=WAIT
        )
    assert shown(note) == wording.PLATFORM_SLOW
    assert len(fake.calls_to("sendPhoto")) == 1  # the card arrived late, and was not repeated


async def test_polling_rides_out_errors_and_loses_no_update(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    alice = user(2004, "Alice")
    await fake.wait_for("getUpdates")
    fake.fail_next("getUpdates", status=502, times=2)
    fake.fail_next("getUpdates", status=429, retry_after=1)
    sent = [
        fake.send_photo(alice, selfie),
        fake.send_command(alice, "/help"),
        fake.send_command(alice, "/mode match"),
    ]
    replies = [await reply_to(fake, message) for message in sent]
    assert replies[0].method == "sendPhoto"
    help_ = f"{core_service.HELP_SEND}\n\n{telegram_adapter.SYNTAX.help_body(Mode.LIFT)}"
    assert shown(replies[1]) == help_
    assert shown(replies[2]) == core_service.MODE_SET[core_service.moods.Mode.MATCH]
    failed = [c.params.get("_failed_with") for c in fake.calls_to("getUpdates")]
    assert failed.count(502) == 2 and failed.count(429) == 1
    await fake.wait_until_delivered(within=WAIT)
    assert len(fake.replies(alice["id"])) == 3  # each update answered once


@pytest.fixture
async def quick_bot() -> AsyncIterator[tuple[FakeTelegramAPI, ExtBot[None]]]:
    """The adapter's HTTP layer with a 0.3 s read timeout, so a stalled answer times out."""
    async with FakeTelegramAPI() as fake:
        bot = ExtBot(
            fake.token,
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            request=RetryingRequest(attempts=3, backoff=0.05, read_timeout=0.3),
            rate_limiter=RetryAfterLimiter(),
        )
        async with bot:
            yield fake, bot


async def test_timeouts_are_retried_where_repeating_is_harmless(
    quick_bot: tuple[FakeTelegramAPI, ExtBot[None]], selfie: bytes
) -> None:
    fake, bot = quick_bot
    stored = fake.register_file(selfie, declared_size=len(selfie))
    fake.stall_next("getFile", 1.0)
    fake.stall_next("GET file", 1.0)
    telegram_file = await bot.get_file(stored.file_id)
    assert bytes(await telegram_file.download_as_bytearray()) == selfie
    await fake.wait_for("getFile", count=2)  # the timed-out call, and its retry
    await fake.wait_for("GET file", count=2)

    # A send that timed out may have reached the user: it is reported, not repeated.
    fake.stall_next("sendMessage", 1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(1, "hello")
    await fake.wait_for("sendMessage")  # recorded when the stall ends; a repeat came before
    assert len(fake.calls_to("sendMessage")) == 1


# --- Discord -----------------------------------------------------------------------------------


@pytest.fixture
def simcord_bot(service: MoodLifter) -> MoodLiftBot:
    return build_client(service, DiscordOptions())


def answer(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    """What the user sees: the completed 'thinking…' message, or the direct reply."""
    message = result.followups[-1] if result.followups else result.response
    assert message is not None, result
    return message


@pytest.mark.simcord(settle_timeout=120.0)
async def test_discord_error_on_the_answer_is_logged_and_the_bot_goes_on(
    simcord_env: simcord.Env, selfie: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    channel = simcord_env.create_guild("Party").create_text_channel("music")
    alice = channel.guild.add_member(simcord_env.create_user("alice"))
    simcord_env.inject_error("POST", "/webhooks/*", status=503, message="Service Unavailable")
    with caplog.at_level(logging.ERROR, logger="bot.discord_bot"):
        failed = await alice.slash(channel, "selfie", photo=("me.jpg", selfie))
    assert answer(failed).content == wording.SOMETHING_WENT_WRONG
    (record,) = [r for r in caplog.records if r.name == "bot.discord_bot"]
    assert record.getMessage() == "error while handling /selfie"
    assert len(simcord_env.errors) == 1  # seen (and so acknowledged)

    again = await alice.slash(channel, "selfie", photo=("me.jpg", selfie))
    assert answer(again).embeds and answer(again).embeds[0].url
