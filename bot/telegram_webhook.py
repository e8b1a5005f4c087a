"""Telegram webhook mode: Telegram POSTs each update to us instead of us polling for it.

Several instances behind a reverse proxy (or load balancer) can then share one bot: Telegram
sends every update once, to the one public URL, and the proxy hands it to any instance. This
is python-telegram-bot's custom-webhook pattern (its ``customwebhookbot`` examples): a small
web server of our own puts each update on ``Application.update_queue``, and the application
processes it exactly as a polled one. Our own server (aiohttp, already there for discord.py)
rather than ``Updater.start_webhook`` because the load balancer also needs a health endpoint.

Every POST must carry the secret token given to ``setWebhook`` in the
``X-Telegram-Bot-Api-Secret-Token`` header; a wrong or missing one gets 403 and nothing is
processed. ``GET /healthz`` answers 200 with a small JSON while the bot takes updates, 503
while it stops. The secret is never logged.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field

from aiohttp import web
from telegram import Update

from bot.telegram import UPDATES, MoodApplication
from bot.telegram_http import RedactToken
from core.config import TelegramSettings
from core.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
MAX_UPDATE_BYTES = 1024 * 1024  # an update is JSON that refers to files; it never holds them


def check_webhook_settings(settings: TelegramSettings) -> tuple[str, str]:
    """The public URL and the secret of webhook mode; a :class:`ConfigError` names a missing
    one (both are needed: without the secret anyone could post us updates)."""
    missing = [
        f"telegram.{key} (MOODLIFT_TELEGRAM_{key.upper()})"
        for key in ("webhook_url", "webhook_secret")
        if not getattr(settings, key)
    ]
    if missing:
        raise ConfigError(f"telegram.mode = 'webhook' needs {' and '.join(missing)}")
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    return settings.webhook_url, settings.webhook_secret.get()


@dataclass
class WebhookServer:
    """The HTTP server that receives Telegram's POSTs for one application.

    ``port`` 0 binds a free port; :attr:`port` holds the real one once started.
    """

    application: MoodApplication
    secret: str = field(repr=False)
    listen: str = "127.0.0.1"
    port: int = 8080
    path: str = "/telegram"
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        """Listen for updates and health checks (returns once the socket is bound)."""
        app = web.Application(client_max_size=MAX_UPDATE_BYTES)
        app.router.add_post(self.path, self._receive)
        app.router.add_get(HEALTH_PATH, self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.listen, self.port)
        await site.start()
        server = site._server
        if server is not None and getattr(server, "sockets", None):
            self.port = server.sockets[0].getsockname()[1]
        log.info("telegram: webhook server on http://%s:%d%s", self.listen, self.port, self.path)

    async def stop(self) -> None:
        """Stop accepting requests (the application then finishes what it has queued)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("webhook: refused a request without the right secret token")
            return web.Response(status=403, text="Forbidden")
        if not self.application.running:
            return web.Response(status=503, text="Stopping")  # Telegram will send it again
        try:
            data = await request.json()
            update = Update.de_json(data, self.application.bot)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("webhook: ignored a body that is not an update")
            return web.Response(status=400, text="Not an update")
        await self.application.update_queue.put(update)
        return web.Response(status=200)

    async def _health(self, request: web.Request) -> web.Response:
        running = bool(self.application.running)
        body = {
            "status": "ok" if running else "stopping",
            "mode": "webhook",
            "queued_updates": self.application.update_queue.qsize(),
        }
        return web.json_response(body, status=200 if running else 503)


async def start_webhook(application: MoodApplication, settings: TelegramSettings) -> WebhookServer:
    """Initialize and start ``application``, serve the webhook, and register it with Telegram.

    Every instance registers the same URL and secret, so it does not matter which starts
    first. Stopping does not delete the webhook: the other instances keep serving it (and
    switching back to polling deletes it, as python-telegram-bot does before polling).
    """
    url, secret = check_webhook_settings(settings)
    RedactToken(secret).install()  # python-telegram-bot logs setWebhook's parameters at DEBUG
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)
    await application.start()
    server = WebhookServer(
        application,
        secret,
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        path=settings.webhook_path,
    )
    try:
        await server.start()
        await application.bot.set_webhook(
            url, secret_token=secret, allowed_updates=UPDATES, drop_pending_updates=False
        )
    except BaseException:
        await stop_webhook(application, server)
        raise
    log.info("Telegram bot @%s receives updates at its webhook", application.bot.username)
    return server


async def stop_webhook(application: MoodApplication, server: WebhookServer) -> None:
    """Stop taking updates, let the queued ones finish, then close the server and the HTTP
    clients. While the queue drains the server is still up, answering 503 to new updates
    (Telegram sends them again, to an instance that is up) and to health checks (so the load
    balancer takes this instance out)."""
    if application.running:
        await application.stop()
    await server.stop()
    await application.shutdown()
