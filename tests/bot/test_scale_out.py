"""Two bot instances in webhook mode behind a reverse proxy, sharing one PostgreSQL database.

Each instance is the whole runtime (``bot.runtime.serve``: schema upgrade, catalog import, the
Telegram application in webhook mode) with its own engine, worker pool and webhook server, as
two processes would have. The fake Bot API POSTs every update to the one public URL, a
round-robin proxy hands them to the instances alternately, and the users send selfies and
/more at the same time. Every update must be answered exactly once, and no user may get the
same track twice. Skips without PostgreSQL (``MOODLIFT_TEST_POSTGRES_URL``); CI runs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from sqlalchemy import select

from bot.runtime import serve
from bot.telegram_webhook import SECRET_HEADER
from core.config import DatabaseSettings, LimitsSettings, Secret, Settings, TelegramSettings
from core.service import MoodLifter
from core.store import Store
from core.store.schema import Delivery, User
from tests.bot.conftest import service_settings
from tests.bot.test_telegram import WAIT, assert_card, track_url
from tests.fakes.telegram_api import FakeTelegramAPI, user

SECRET = "scale-out-secret_42"
USERS = 4
MORE_PER_USER = 6


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RoundRobinProxy:
    """The reverse proxy / load balancer: each POST goes to the next instance in turn."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.forwarded: Counter[str] = Counter()
        self._next = itertools.cycle(backends)
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/telegram", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]
        self._client = ClientSession()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        backend = next(self._next)
        headers = {k: v for k, v in request.headers.items() if k == SECRET_HEADER}
        async with self._client.post(backend, data=await request.read(), headers=headers) as answer:
            self.forwarded[backend] += 1
            return web.Response(status=answer.status, body=await answer.read())


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
async def proxy() -> AsyncIterator[RoundRobinProxy]:
    ports = [free_port(), free_port()]
    balancer = RoundRobinProxy([f"http://127.0.0.1:{port}/telegram" for port in ports])
    await balancer.start()
    try:
        yield balancer
    finally:
        await balancer.close()


def instance_settings(
    base: Settings, database_url: str, fake: FakeTelegramAPI, proxy: RoundRobinProxy, n: int
) -> Settings:
    port = int(proxy.backends[n].rsplit(":", 1)[1].split("/")[0])
    telegram = TelegramSettings(
        token=Secret(fake.token),
        api_url=fake.base_url,
        file_url=fake.base_file_url,
        mode="webhook",
        webhook_port=port,
        webhook_url=f"http://127.0.0.1:{proxy.port}/telegram",
        webhook_secret=Secret(SECRET),
    )
    return dataclasses.replace(base, database=DatabaseSettings(url=database_url), telegram=telegram)


@pytest.fixture
async def instances(
    tmp_path: Path, music_dir: Path, postgres_url: str, fake: FakeTelegramAPI, proxy
) -> AsyncIterator[list[MoodLifter]]:
    """Both instances started at the same moment on one empty database; stopped after."""
    base = service_settings(tmp_path, music_dir, LimitsSettings(photos_per_minute=100))
    stops = [asyncio.Event(), asyncio.Event()]
    services: list[MoodLifter] = []
    both_ready = asyncio.Event()

    def ready(service: MoodLifter) -> None:
        services.append(service)
        if len(services) == 2:
            both_ready.set()

    tasks = [
        asyncio.create_task(
            serve(
                instance_settings(base, postgres_url, fake, proxy, n),
                ["telegram"],
                stop_event=stops[n],
                ready=ready,
            )
        )
        for n in range(2)
    ]
    try:
        waiting = asyncio.create_task(both_ready.wait())
        done, _ = await asyncio.wait(
            [waiting, *tasks], timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            task.result()  # an instance that failed to start fails the test here
        assert both_ready.is_set(), "the instances did not start"
        yield services
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_instances_answer_every_update_once_and_never_repeat_a_track(
    instances: list[MoodLifter],
    fake: FakeTelegramAPI,
    proxy: RoundRobinProxy,
    postgres_url: str,
    selfie: bytes,
) -> None:
    people = [user(3000 + n, f"User {n}") for n in range(USERS)]
    sent: dict[int, list[int]] = {p["id"]: [] for p in people}

    # Everyone's first selfie at once, then /more and another selfie, all at once.
    for person in people:
        sent[person["id"]].append(fake.send_photo(person, selfie)["message_id"])
    for person in people:
        await fake.wait_for_replies(person["id"], 1, within=WAIT)
    for _ in range(MORE_PER_USER):
        for person in people:
            sent[person["id"]].append(fake.send_command(person, "/more")["message_id"])
    for person in people:
        sent[person["id"]].append(fake.send_photo(person, selfie)["message_id"])
    for person in people:
        await fake.wait_for_replies(person["id"], len(sent[person["id"]]), within=WAIT)
    await fake.wait_until_delivered(within=WAIT)

    updates = USERS * (MORE_PER_USER + 2)
    assert len(fake.webhook_deliveries) == updates
    assert {d.status for d in fake.webhook_deliveries} == {200}
    assert sorted(proxy.forwarded.values()) == [updates // 2, updates // 2]  # both served

    for person in people:
        replies = fake.replies(person["id"])
        # One answer per update: each message the user sent is replied to exactly once.
        assert Counter(r.reply_to for r in replies) == Counter(sent[person["id"]])
        for reply in replies:
            assert_card(reply, replying_to=reply.reply_to)
        tracks = [track_url(r) for r in replies]
        assert len(set(tracks)) == len(tracks), f"a track was repeated for {person['id']}"

    store = Store(postgres_url)
    try:
        async with store.sessions() as session:
            rows = (
                await session.execute(
                    select(User.platform_user_id, Delivery.track_id, Delivery.round).join(
                        Delivery, Delivery.user_id == User.id
                    )
                )
            ).all()
    finally:
        await store.close()
    per_user = Counter(platform_user_id for platform_user_id, _, _ in rows)
    assert per_user == {str(p["id"]): MORE_PER_USER + 2 for p in people}
    assert len({(u, t) for u, t, _ in rows}) == len(rows)  # no track twice for anyone
    assert {r for _, _, r in rows} == {1}
