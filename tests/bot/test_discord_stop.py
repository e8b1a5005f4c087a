"""A stop (SIGTERM) while a Discord answer is being worked on finishes it before the connection
closes, as Telegram's stop does: the card arrives and its song is rightly counted as sent.

Runs the real ``serve`` against :class:`bench.fake_discord.FakeDiscord` (a real gateway
connection and REST on 127.0.0.1): SimCord runs no connection, so it cannot show a stop."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import discord.gateway
import discord.http
import pytest
import yarl

from bench.fake_discord import FakeDiscord
from bot.runtime import serve
from core.config import DiscordSettings, LimitsSettings, Secret
from core.service import MoodLifter
from tests.bot.conftest import service_settings

WAIT = 60.0
DM = "222222222222222222"
USER_ID = "111111111111111111"


async def test_a_stop_while_a_dm_selfie_is_read_still_answers_it(
    tmp_path: Path, music_dir: Path, monkeypatch: pytest.MonkeyPatch, selfie: bytes
) -> None:
    settings = dataclasses.replace(
        service_settings(tmp_path, music_dir, LimitsSettings()),
        discord=DiscordSettings(token=Secret("MTIzNDU2.SECRET.discordtoken")),
    )
    stop = asyncio.Event()
    ready = asyncio.Event()

    def on_ready(service: MoodLifter) -> None:
        loop = asyncio.get_running_loop()
        read = service.reader.read

        def slow_read(*args: object, **kwargs: object) -> object:  # in a photo worker
            loop.call_soon_threadsafe(stop.set)  # the stop comes while the selfie is read
            time.sleep(0.5)
            return read(*args, **kwargs)

        monkeypatch.setattr(service.reader, "read", slow_read)
        ready.set()

    async with FakeDiscord() as fake:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway)
        )
        serving = asyncio.create_task(serve(settings, ["discord"], stop_event=stop, ready=on_ready))
        await asyncio.wait_for(ready.wait(), WAIT)
        for _ in range(int(WAIT * 10)):
            if fake.ready_sent:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # READY handled
        await fake.send_dm_photo(selfie, DM, USER_ID)
        await asyncio.wait_for(serving, WAIT)
    assert stop.is_set()
    assert fake.posted == [DM]  # the card, sent before the connection closed
    with sqlite3.connect(tmp_path / "moodlift.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)
