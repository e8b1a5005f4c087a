"""A platform whose connection gives up for good while running stops `serve` with a one-line
reason, instead of leaving the bot offline in a process that looks healthy."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import discord.gateway
import discord.http
import pytest
import yarl
from aiohttp import WSMsgType, web

from bench.fake_discord import FakeDiscord
from bot.runtime import PlatformLostError, serve
from core.config import DiscordSettings, LimitsSettings, Secret, TelegramSettings
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import FakeTelegramAPI

WAIT = 30.0
DISCORD_TOKEN = "MTIzNDU2.SECRET.discordtoken"


class _ResetToken(FakeDiscord):
    """A gateway that closes every session with 4004, as Discord does after a token reset."""

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for message in ws:
            if message.type == WSMsgType.TEXT and json.loads(message.data).get("op") == 2:
                await ws.close(code=4004, message=b"Authentication failed.")
        return ws


async def test_discord_closing_the_gateway_for_good_stops_serve_with_the_reason(
    tmp_path: Path, music_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(
        service_settings(tmp_path, music_dir, LimitsSettings()),
        discord=DiscordSettings(token=Secret(DISCORD_TOKEN)),
    )
    async with _ResetToken() as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway)
        )
        with pytest.raises(PlatformLostError) as raised:
            await asyncio.wait_for(serve(settings, ["discord"]), WAIT)
    message = str(raised.value)
    assert message.startswith("discord: ") and "refused the bot token while running" in message
    assert "SECRET" not in message


async def test_telegram_refusing_the_token_while_polling_stops_serve_with_the_reason(
    tmp_path: Path, music_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One line says why, and the stop is clean (no "did not stop cleanly" with a traceback:
    the updates in flight are finished, the HTTP clients closed)."""
    async with FakeTelegramAPI() as fake:
        telegram = TelegramSettings(
            token=Secret(fake.token),
            api_url=fake.base_url,
            file_url=fake.base_file_url,
            poll_timeout=1,
        )
        settings = dataclasses.replace(
            service_settings(tmp_path, music_dir, LimitsSettings()), telegram=telegram
        )
        running = asyncio.Event()
        task = asyncio.create_task(serve(settings, ["telegram"], ready=lambda _: running.set()))
        await asyncio.wait_for(running.wait(), WAIT)
        fake.fail_next("getUpdates", status=401, description="Unauthorized", times=1000)
        with pytest.raises(PlatformLostError) as raised:
            await asyncio.wait_for(task, WAIT)
    message = str(raised.value)
    assert message.startswith("telegram: ") and "refused the bot token while running" in message
    assert fake.token not in message
    assert not [r for r in caplog.records if r.name == "bot.runtime" and r.exc_info]
