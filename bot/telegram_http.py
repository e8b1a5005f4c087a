"""How the Telegram adapter talks HTTP: retries for flaky moments, and no token in the logs.

* :class:`RetryingRequest` retries a Bot API call that met a 5xx answer or could not connect,
  with exponential backoff; a read timeout is retried only for calls that are safe to repeat
  (a ``send*`` call that timed out may already have reached the user).
* :class:`RetryAfterLimiter` honours Telegram's ``429 Too Many Requests`` by waiting the
  ``retry_after`` it names, then trying again (python-telegram-bot's hook for exactly this).
* :class:`RedactToken` scrubs the bot token from log records: httpx logs every request URL, and
  Bot API URLs contain the token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import warnings
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

import httpx
from telegram.error import RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter
from telegram.request import HTTPXRequest, RequestData
from telegram.warnings import PTBDeprecationWarning

from bot.log_redaction import Redactor

log = logging.getLogger(__name__)

# Calls that change nothing the user sees twice when repeated.
_SAFE_TO_REPEAT_PREFIXES = ("get", "answer", "edit", "set", "delete")
_SAFE_TO_REPEAT = {"sendChatAction"}
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _method_of(url: str) -> str:
    """``.../bot<token>/sendPhoto`` → ``sendPhoto``; a file download → ``file``."""
    return "file" if "/file/bot" in url else url.rsplit("/", 1)[-1]


def _safe_to_repeat(method: str) -> bool:
    return (
        method == "file" or method in _SAFE_TO_REPEAT or method.startswith(_SAFE_TO_REPEAT_PREFIXES)
    )


class RetryingRequest(HTTPXRequest):
    """An :class:`HTTPXRequest` that retries 5xx answers and failed connections with backoff."""

    def __init__(self, *, attempts: int = 4, backoff: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._attempts = max(1, attempts)
        self._backoff = backoff

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        """One Bot API call, tried up to ``attempts`` times."""
        api_method = _method_of(url)
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                code, payload = await super().do_request(url, method, request_data, *args, **kwargs)
            except TimedOut as error:
                never_sent = isinstance(error.__cause__, _NOT_SENT)
                if last or not (never_sent or _safe_to_repeat(api_method)):
                    raise
                reason = f"timed out ({error.__cause__.__class__.__name__})"
            except Exception as error:  # NetworkError and friends from the transport
                if last or not isinstance(error.__cause__, httpx.TransportError):
                    raise
                reason = error.__cause__.__class__.__name__
            else:
                if code < 500 or last:
                    return code, payload
                reason = f"HTTP {code}"
            delay = self._backoff * 2 ** (attempt - 1)
            log.warning(
                "Telegram %s failed (%s); retry %d/%d in %.1fs",
                api_method,
                reason,
                attempt,
                self._attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


class RetryAfterLimiter(BaseRateLimiter[None]):
    """On ``429 Too Many Requests`` wait the ``retry_after`` Telegram names, then retry."""

    def __init__(self, *, max_retries: int = 3, max_wait: float = 60.0) -> None:
        self._max_retries = max_retries
        self._max_wait = max_wait

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Call the API; sleep and try again while Telegram says to retry later."""
        for attempt in range(self._max_retries + 1):
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                seconds = _seconds(error)
                if attempt == self._max_retries or seconds > self._max_wait:
                    raise
                log.warning("Telegram says slow down on %s; waiting %.1fs", endpoint, seconds)
                await asyncio.sleep(seconds)
        raise AssertionError("unreachable")  # pragma: no cover


def _seconds(error: RetryAfter) -> float:
    """``retry_after`` in seconds, whichever type this python-telegram-bot version returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        wait = error.retry_after
    return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)


class RedactToken(Redactor):
    """Replace the bot token in a record's message and traceback with ``<token>``."""

    LOGGERS = (
        "httpx",
        "httpcore",
        "telegram.Bot",
        "telegram.ext.ExtBot",
        "telegram.ext.Updater",
        "telegram.ext.Application",
        "telegram.request.BaseRequest",
    )

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token
        # File URLs carry the token percent-encoded (":" becomes "%3A").
        self._forms = tuple(
            form for form in dict.fromkeys((token, quote(token, safe=""), quote(token))) if form
        )

    def scrub(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, "<token>")
        return text

    def key(self) -> object:
        return (type(self), self._token)
