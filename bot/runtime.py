"""Run the bot: build the core once, start every chat platform that has a token, stop cleanly.

SIGINT/SIGTERM stop accepting new updates, let work in flight finish, then close the
platforms, the worker pool and the database — in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.catalog import ensure_catalog
from core.config import Settings
from core.errors import CatalogError, MoodLiftError
from core.service import MoodLifter

log = logging.getLogger(__name__)

PLATFORMS = ("telegram", "discord")

MALLOC_ARENAS = 2
"""glibc gives each thread that allocates its own malloc arena (up to 8 per core), and freed
memory stays in the arena it came from; the bot's threads (photo workers, aiosqlite, asyncio's
default executor) each kept one. Two arenas measured 9-10 MB less peak RSS after ten selfies
(bench.footprint) with no change in speed."""
_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


@dataclass
class RunningPlatform:
    """A started platform and the coroutine that stops it."""

    name: str
    stop: Callable[[], Awaitable[None]]


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (call before threads start); whether it took.

    Elsewhere than glibc (musl, macOS) there is nothing to cap and this does nothing.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def configured_platforms(settings: Settings) -> list[str]:
    """The platforms that have a token, in a stable order."""
    found = []
    if settings.telegram.token:
        found.append("telegram")
    if settings.discord.token:
        found.append("discord")
    return found


class PlatformError(MoodLiftError):
    """A chat platform failed the bot; the message says which and what to check, and never
    holds the token (the libraries' errors may)."""

    def __init__(self, platform: str, problem: str, error: BaseException, token: str) -> None:
        detail = f"{type(error).__name__}: {error}"
        super().__init__(f"{platform}: {problem} ({detail.replace(token, '<token>')})")


class PlatformStartError(PlatformError):
    """The platform refused the bot's token or could not be reached at start."""


class PlatformLostError(PlatformError):
    """A running platform's connection ended for good (a token reset, a missing intent): the
    bot would sit offline while the process runs, so the process stops and says why."""


OnLost = Callable[[PlatformLostError], None]

# python-telegram-bot's polling task, by the name its Updater gives it (no public handle).
TELEGRAM_POLLING_TASK = "Updater:start_polling:polling_task"
DISCORD_STOP_WAIT = 20.0
"""Seconds a stop waits for Discord answers being worked on (systemd allows the whole stop 30)."""


def _watch(task: asyncio.Task, platform: str, token: str, on_lost: OnLost) -> None:
    """Report ``task`` ending with an error: a platform's connection that gave up for good."""

    def done(task: asyncio.Task) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:  # else stopped on purpose
            on_lost(PlatformLostError(platform, _lost_problem(platform, error), error, token))

    task.add_done_callback(done)


def _lost_problem(platform: str, error: BaseException) -> str:
    code = getattr(error, "code", None)
    if platform == "discord":
        if code == 4004:
            return (
                "Discord refused the bot token while running (was it reset?); check "
                "MOODLIFT_DISCORD_TOKEN or [discord] token"
            )
        if code == 4014 or type(error).__name__ == "PrivilegedIntentsRequired":
            return (
                "Discord requires the message content intent: enable it for this bot in the "
                "Developer Portal (Bot, Privileged Gateway Intents)"
            )
        if code == 4011:
            return "Discord requires sharding for this many servers: set [discord] shard_count"
        return "Discord closed the connection for good"
    if type(error).__name__ == "InvalidToken":
        return (
            "Telegram refused the bot token while running (was it revoked?); check "
            "MOODLIFT_TELEGRAM_TOKEN or [telegram] token"
        )
    return "Telegram polling stopped"


async def _start_telegram(
    service: MoodLifter, settings: Settings, on_lost: OnLost
) -> RunningPlatform:
    from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError

    from bot.telegram import build_application, start_polling, stop_polling

    application = build_application(
        service, settings.telegram, max_image_bytes=settings.limits.max_image_bytes
    )
    assert settings.telegram.token is not None
    token = settings.telegram.token.get()
    try:
        if settings.telegram.mode == "webhook":
            from bot.telegram_webhook import start_webhook, stop_webhook

            server = await start_webhook(application, settings.telegram)
            return RunningPlatform("telegram", lambda: stop_webhook(application, server))
        await start_polling(application, poll_timeout=settings.telegram.poll_timeout)
    except TelegramError as error:
        with contextlib.suppress(Exception):
            await stop_polling(application)
        if isinstance(error, InvalidToken):
            problem = "the bot token was refused; check MOODLIFT_TELEGRAM_TOKEN or [telegram] token"
        elif isinstance(error, NetworkError) and not isinstance(error, BadRequest):
            problem = "cannot reach the Bot API; check the network (or [telegram] api_url)"
        else:
            problem = "Telegram refused to start the bot"
        raise PlatformStartError("telegram", problem, error, token) from None
    polling = [task for task in asyncio.all_tasks() if task.get_name() == TELEGRAM_POLLING_TASK]
    for task in polling:
        _watch(task, "telegram", token, on_lost)
    if not polling:
        log.debug("telegram: polling task not found; a token revoked later goes unnoticed")
    log.info("telegram: polling for updates")
    return RunningPlatform("telegram", lambda: stop_polling(application))


async def _start_discord(
    service: MoodLifter, settings: Settings, on_lost: OnLost
) -> RunningPlatform:
    import aiohttp
    import discord

    from bot.discord_bot import build_client

    client = build_client(service, settings)
    assert settings.discord.token is not None
    token = settings.discord.token.get()
    try:
        await client.login(token)  # a bad token fails here, at start
    except (discord.DiscordException, aiohttp.ClientError, OSError) as error:
        await client.close()
        if isinstance(error, discord.LoginFailure):
            problem = "the bot token was refused; check MOODLIFT_DISCORD_TOKEN or [discord] token"
        elif isinstance(error, discord.HTTPException):
            problem = "Discord refused to start the bot"
        else:
            problem = "cannot reach Discord; check the network"
        raise PlatformStartError("discord", problem, error, token) from None
    task = asyncio.create_task(client.connect(), name="discord")
    _watch(task, "discord", token, on_lost)
    log.info("discord: connecting to the gateway")

    async def stop() -> None:
        # Answers being worked on are finished first: closing the client closes its HTTP
        # session, and a card read but never sent would be lost (and its song used up).
        try:
            async with asyncio.timeout(DISCORD_STOP_WAIT):
                await client.finish_handling()
        except TimeoutError:
            log.warning("discord: %d answers unfinished after %.0f s; stopping anyway",
                        client.unfinished, DISCORD_STOP_WAIT)  # fmt: skip
        await client.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    return RunningPlatform("discord", stop)


_STARTERS = {"telegram": _start_telegram, "discord": _start_discord}


async def serve(
    settings: Settings,
    platforms: list[str],
    *,
    stop_event: asyncio.Event | None = None,
    ready: Callable[[MoodLifter], None] | None = None,
) -> None:
    """Start ``platforms`` on one core and run until ``stop_event`` is set (or a signal).

    A platform whose connection gives up for good stops the whole process with a
    :class:`PlatformLostError`: a supervisor restarts it, or the operator sees why it stopped.
    """
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    service = await MoodLifter.create(settings)
    running: list[RunningPlatform] = []
    lost: list[PlatformLostError] = []

    def on_lost(error: PlatformLostError) -> None:
        if stop_event.is_set():
            return  # already stopping: an error on the way out is not news
        log.error("%s; stopping", error)
        lost.append(error)
        stop_event.set()

    try:
        try:
            await ensure_catalog(settings, service.store)
        except CatalogError as error:
            # The bots still start: they read faces, and serve the songs imported so far or say
            # the song list is being set up. The next start imports the sources still missing.
            tracks = (await service.store.catalog_counts()).total
            state = f"song catalog incomplete, {tracks} tracks so far" if tracks else None
            log.warning(
                "%s (%s); set MOODLIFT_CATALOG_SOURCES to local copies of the catalog files, or "
                "restart when the network is back to import the rest",
                state or "no song catalog yet",
                error,
            )
        for name in platforms:
            running.append(await _STARTERS[name](service, settings, on_lost))
        if ready is not None:
            ready(service)
        log.info("ready: %s", ", ".join(platforms) or "no platform")
        await stop_event.wait()
        if platforms:
            log.info("stopping: finishing work in flight")
    finally:
        for platform in reversed(running):
            try:
                await platform.stop()
            except Exception:
                log.exception("%s did not stop cleanly", platform.name)
        await service.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if lost:
        raise lost[0]
