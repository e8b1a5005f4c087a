"""The Telegram HTTP layer: token redaction in logs, and how long flood control may wait."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import RetryAfter
from telegram.ext import ExtBot

from bot.telegram_http import RedactToken, RetryAfterLimiter, RetryingRequest
from tests.fakes.telegram_api import FakeTelegramAPI

TOKEN = "123456789:AAFakeTokenForTestsOnly-abcdefghijk"
SECRET = TOKEN.split(":", 1)[1]


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("httpx", logging.INFO, __file__, 1, msg, args, exc_info)


def test_redaction_covers_message_args_encoded_form_and_traceback() -> None:
    redact = RedactToken(TOKEN)
    plain = _record("HTTP Request: POST %s", f"https://api.telegram.org/bot{TOKEN}/getMe")
    encoded = _record("GET https://api.telegram.org/file/bot123456789%3A" + SECRET + "/x.jpg")
    try:
        raise RuntimeError(f"cannot reach https://api.telegram.org/bot{TOKEN}/sendPhoto")
    except RuntimeError as error:
        failed = _record("request failed", exc=error)
    for record in (plain, encoded, failed):
        assert redact.filter(record)
        text = logging.Formatter().format(record)
        assert SECRET not in text, text
    assert "<token>" in plain.getMessage() and "<token>" in failed.exc_text


def test_a_late_mutation_of_logged_arguments_cannot_leak() -> None:
    result = {"file_path": "photos/1.jpg"}
    record = _record("returned %s", result)
    RedactToken(TOKEN).filter(record)
    result["file_path"] = f"https://api.telegram.org/file/bot{TOKEN}/photos/1.jpg"
    assert SECRET not in logging.Formatter().format(record)


def test_install_is_idempotent() -> None:
    RedactToken(TOKEN).install()
    RedactToken(TOKEN).install()
    httpx_filters = [f for f in logging.getLogger("httpx").filters if isinstance(f, RedactToken)]
    assert len([f for f in httpx_filters if f._token == TOKEN]) == 1


@pytest.fixture
async def bot() -> AsyncIterator[tuple[FakeTelegramAPI, ExtBot[None]]]:
    async with FakeTelegramAPI(TOKEN) as fake:
        ext_bot = ExtBot(
            fake.token,
            base_url=fake.base_url,
            base_file_url=fake.base_file_url,
            request=RetryingRequest(attempts=3, backoff=0.05),
            rate_limiter=RetryAfterLimiter(max_retries=2, max_wait=5),
        )
        async with ext_bot:
            yield fake, ext_bot


async def test_flood_control_waits_when_asked_and_gives_up_on_absurd_waits(
    bot: tuple[FakeTelegramAPI, Bot],
) -> None:
    fake, ext_bot = bot
    fake.fail_next("sendMessage", status=429, retry_after=1)
    assert (await ext_bot.send_message(1, "hi")).text == "hi"
    fake.fail_next("sendMessage", status=429, retry_after=3600)
    with pytest.raises(RetryAfter):
        await ext_bot.send_message(1, "hi")  # an hour is not worth holding a handler for


async def test_server_errors_are_retried_then_reported(bot: tuple[FakeTelegramAPI, Bot]) -> None:
    fake, ext_bot = bot
    fake.fail_next("sendMessage", status=503, times=2)
    assert (await ext_bot.send_message(1, "hi")).text == "hi"
    fake.fail_next("sendMessage", status=500, times=3)
    with pytest.raises(Exception, match="Internal Server Error"):
        await ext_bot.send_message(1, "hi")
    assert len(fake.calls_to("sendMessage")) == 2 + 1 + 3
