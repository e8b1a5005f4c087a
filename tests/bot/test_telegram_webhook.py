"""Telegram in webhook mode: the fake Bot API POSTs updates to the bot's own webhook server.

The real Application and core, as in test_telegram.py; only the way updates arrive differs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from bot.telegram import build_application
from bot.telegram_webhook import HEALTH_PATH, SECRET_HEADER, WebhookServer, start_webhook
from bot.telegram_webhook import stop_webhook as stop
from core.config import LimitsSettings, Secret, Settings, TelegramSettings
from core.errors import ConfigError
from core.service import MoodLifter
from tests.bot.conftest import service_settings
from tests.bot.test_telegram import WAIT, assert_card
from tests.fakes.telegram_api import FakeTelegramAPI, user

SECRET = "s3cret-Token_for-webhooks"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def webhook_settings(fake: FakeTelegramAPI, port: int, **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {
        "token": Secret(fake.token),
        "api_url": fake.base_url,
        "file_url": fake.base_file_url,
        "mode": "webhook",
        "webhook_port": port,
        "webhook_url": f"http://127.0.0.1:{port}/telegram",
        "webhook_secret": Secret(SECRET),
    }
    return TelegramSettings(**{**values, **overrides})


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path) -> Settings:
    return service_settings(tmp_path, music_dir, LimitsSettings(photos_per_minute=100))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
async def webhook(service: MoodLifter, fake: FakeTelegramAPI) -> AsyncIterator[WebhookServer]:
    """The bot as production starts it in webhook mode, registered with the fake."""
    telegram = webhook_settings(fake, free_port())
    application = build_application(service, telegram)
    server = await start_webhook(application, telegram)
    try:
        yield server
    finally:
        await stop(application, server)


async def test_updates_arrive_by_webhook_and_are_answered(
    webhook: WebhookServer,
    fake: FakeTelegramAPI,
    selfie: bytes,
) -> None:
    (registered,) = fake.calls_to("setWebhook")
    assert registered.params["url"] == f"http://127.0.0.1:{webhook.port}/telegram"
    assert registered.params["secret_token"] == SECRET
    assert set(registered.params["allowed_updates"]) == {
        "message",
        "callback_query",
        "my_chat_member",
        "message_reaction",
    }

    alice = user(2001, "Alice")
    photo = fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert_card(card, replying_to=photo["message_id"])
    more = fake.send_command(alice, "/more")
    _, second = await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    assert_card(second, replying_to=more["message_id"])
    await fake.wait_until_delivered()
    assert [d.status for d in fake.webhook_deliveries] == [200, 200]
    assert not fake.calls_to("getUpdates")  # nothing polled


async def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_processed(
    webhook: WebhookServer, fake: FakeTelegramAPI
) -> None:
    url = f"http://127.0.0.1:{webhook.port}/telegram"
    mallory = user(2002, "Mallory")
    forged = {"update_id": 1, "message": fake.new_message(mallory, text="/help")}
    async with ClientSession() as client:
        for headers in ({}, {SECRET_HEADER: "guess"}, {SECRET_HEADER: SECRET + "x"}):
            async with client.post(url, json=forged, headers=headers) as response:
                assert response.status == 403
        async with client.post(url, data=b"not json", headers={SECRET_HEADER: SECRET}) as bad:
            assert bad.status == 400
    # The same kind of update with the secret (from the fake, as Telegram) is answered.
    fake.send_command(mallory, "/help")
    (answer,) = await fake.wait_for_replies(mallory["id"], 1, within=WAIT)
    assert "/more" in answer.text
    await fake.wait_until_delivered()
    assert len(fake.replies(mallory["id"])) == 1  # the forged ones never reached a handler


async def test_health_endpoint_for_the_load_balancer(
    webhook: WebhookServer, fake: FakeTelegramAPI
) -> None:
    base = f"http://127.0.0.1:{webhook.port}"
    async with ClientSession() as client:
        async with client.get(base + HEALTH_PATH) as response:
            assert response.status == 200
            assert await response.json() == {
                "status": "ok",
                "mode": "webhook",
                "queued_updates": 0,
            }
        # Shutting down with an update still being answered: the balancer takes the instance
        # out, Telegram resends what it refuses, and the update in hand is answered.
        early = user(2005, "Early")
        fake.stall_next("sendMessage", 1.5)
        fake.send_command(early, "/help")
        await fake.wait_until_delivered(within=WAIT)  # POSTed and queued: the answer is stalled
        stopping = asyncio.create_task(stop(webhook.application, webhook))
        await asyncio.sleep(0.2)
        assert not stopping.done()
        async with client.get(base + HEALTH_PATH) as response:
            assert response.status == 503
            assert (await response.json())["status"] == "stopping"
        update = {"update_id": 1, "message": fake.new_message(user(2004, "Late"), text="/help")}
        async with client.post(
            base + "/telegram", json=update, headers={SECRET_HEADER: SECRET}
        ) as refused:
            assert refused.status == 503
        await asyncio.wait_for(stopping, WAIT)
        assert "/more" in fake.replies(early["id"])[0].text
        with pytest.raises(OSError):  # then the port closes
            async with client.get(base + HEALTH_PATH):
                pass


async def test_the_secret_is_never_logged(
    service: MoodLifter, fake: FakeTelegramAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram = webhook_settings(fake, free_port())
    application = build_application(service, telegram)
    server = await start_webhook(application, telegram)
    try:
        alice = user(2003, "Alice")
        fake.send_command(alice, "/help")
        await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    finally:
        await stop(application, server)
    assert "setWebhook" in caplog.text  # python-telegram-bot did log the call's parameters
    assert SECRET not in caplog.text
    assert fake.token not in caplog.text


async def test_webhook_mode_needs_a_public_url_and_a_secret(
    service: MoodLifter, fake: FakeTelegramAPI
) -> None:
    telegram = webhook_settings(fake, free_port(), webhook_url=None, webhook_secret=None)
    application = build_application(service, telegram)
    with pytest.raises(ConfigError, match=r"webhook_url .* and telegram\.webhook_secret"):
        await start_webhook(application, telegram)
    assert not fake.calls_to("setWebhook")
