"""The least of Discord that lets discord.py log in and connect, on 127.0.0.1.

REST: who the bot is (``/users/@me``), its application, the gateway URL, and the slash-command
sync (answered with what was sent). Gateway: HELLO, then READY after IDENTIFY, and heartbeat
ACKs. No guilds; one event, a photo in a DM (:meth:`FakeDiscord.send_dm_photo`), with what
answering it takes (its file, typing, messages sent, recorded in ``posted``). Enough to measure
how long ``moodlift run`` takes to be connected and how much memory it holds, and to test what
the real process does around a connection (a stop with an answer in flight); the bot's
behaviour is tested on SimCord, which runs no connection.

A process points discord.py here with :func:`point_discord_py_at` (``Route.BASE`` and
``DiscordWebSocket.DEFAULT_GATEWAY`` are constants in discord.py, not settings of ours).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import WSMsgType, web

BOT_ID = "424242424242424242"
APP_ID = "434343434343434343"
_BOT = {
    "id": BOT_ID,
    "username": "moodlift",
    "discriminator": "0",
    "global_name": "Music Mood Lifter",
    "avatar": None,
    "bot": True,
    "flags": 0,
}


def _json(data: Any) -> web.Response:
    # discord.py treats a body as JSON only when the content type is exactly application/json
    # (aiohttp's json_response adds "; charset=utf-8").
    return web.Response(
        body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )


class FakeDiscord:
    """``async with FakeDiscord() as fake``: ``fake.api_base`` and ``fake.gateway`` to point at."""

    def __init__(self) -> None:
        self.identified = 0  # IDENTIFY frames received
        self.ready_sent = 0
        self.synced_commands: list[Any] = []
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(500_000_000_000_000_000)
        self.port = 0
        self.posted: list[str] = []  # channel ids of the messages the bot sent
        self._files: dict[str, bytes] = {}
        self._gateway_socket: web.WebSocketResponse | None = None
        self._sequence = itertools.count(1)

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/api/v10/applications/@me", self._application)
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get("/api/v10/gateway", self._gateway_bot)
        app.router.add_put("/api/v10/applications/{app}/commands", self._sync)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self._sync)
        app.router.add_post("/api/v10/channels/{channel}/typing", self._typing)
        app.router.add_post("/api/v10/channels/{channel}/messages", self._message)
        app.router.add_get("/cdn/{name}", self._file)
        app.router.add_get("/gateway", self._websocket)
        app.router.add_get("/gateway/", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None and site._server.sockets
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- REST ----------------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return _json(_BOT)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": APP_ID,
                "name": "Music Mood Lifter",
                "icon": None,
                "description": "",
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": {**_BOT, "id": "1", "username": "owner", "bot": False},
                "summary": "",
                "verify_key": "0" * 64,
                "team": None,
                "flags": 0,
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _sync(self, request: web.Request) -> web.Response:
        commands = await request.json()
        answered = [
            {**c, "id": str(next(self._ids)), "application_id": APP_ID, "version": "1"}
            for c in commands
        ]
        self.synced_commands = answered
        return _json(answered)

    async def _typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _message(self, request: web.Request) -> web.Response:
        await request.read()
        channel = request.match_info["channel"]
        self.posted.append(channel)
        return _json(self._message_json(channel, _BOT, attachments=[]))

    async def _file(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, headers={"Content-Type": "image/jpeg"})

    def _message_json(self, channel: str, author: dict[str, Any], attachments: list[Any]) -> Any:
        return {
            "id": str(next(self._ids)),
            "channel_id": channel,
            "author": author,
            "content": "",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "pinned": False,
            "type": 0,
        }

    # --- gateway -------------------------------------------------------------------------------

    async def send_dm_photo(self, jpeg: bytes, channel: str, user_id: str) -> None:
        """A user sends the bot ``jpeg`` in a DM (``channel``), as a gateway MESSAGE_CREATE."""
        assert self._gateway_socket is not None, "the bot is not connected"
        name = f"{next(self._ids)}.jpg"
        self._files[name] = jpeg
        url = f"http://127.0.0.1:{self.port}/cdn/{name}"
        author = {"id": user_id, "username": "user", "discriminator": "0", "global_name": None,
                  "avatar": None}  # fmt: skip
        attachment = {"id": str(next(self._ids)), "filename": name, "size": len(jpeg),
                      "url": url, "proxy_url": url, "content_type": "image/jpeg"}  # fmt: skip
        data = self._message_json(channel, author, attachments=[attachment])
        event = {"op": 0, "s": next(self._sequence), "t": "MESSAGE_CREATE", "d": data}
        await self._gateway_socket.send_str(json.dumps(event))

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        self._gateway_socket = ws
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            if frame.get("op") == 2:  # IDENTIFY
                self.identified += 1
                ready = {
                    "v": 10,
                    "user": {**_BOT, "verified": True, "mfa_enabled": False},
                    "guilds": [],
                    "session_id": "fake-session",
                    "resume_gateway_url": self.gateway,
                    "application": {"id": APP_ID, "flags": 0},
                    "shard": [0, 1],
                }
                payload = {"op": 0, "s": next(self._sequence), "t": "READY", "d": ready}
                await ws.send_str(json.dumps(payload))
                self.ready_sent += 1
            elif frame.get("op") == 1:  # HEARTBEAT
                await ws.send_str(json.dumps({"op": 11}))
        return ws


def point_discord_py_at(api_base: str, gateway: str) -> None:
    """Make discord.py in this process talk to a :class:`FakeDiscord`."""
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
