"""Keep our manners with an upstream: a cool-down after 429, a breaker after failures, a pace.

Each upstream (oEmbed, the Web API, the image host) gets its own :class:`Guard`, so one service
throttling us does not stop the others. A guard never sleeps: a user's request asks
:meth:`Guard.ready` and goes straight to the drawn card when the answer is no; only bulk work
(``moodlift catalog art``) waits, with :class:`Pacer` and :meth:`Guard.wait_time`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from core.artwork.outcomes import Blocked, Failed, NoArt, RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_RETRY_AFTER = 30.0
"""Seconds to stay away after a 429 that does not say how long."""
MAX_RETRY_AFTER = 24 * 3600.0
"""A cap, so a garbled header cannot silence an upstream for good."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass
class Guard:
    """One upstream's health: blocked while cooling down (429) or while its breaker is open.

    The breaker opens after ``threshold`` consecutive failures (timeouts, 5xx, malformed
    answers) for ``open_for`` seconds; after that one more failure re-opens it at once (the
    count only resets on a success), so a dead upstream costs one try per period.
    """

    name: str
    threshold: int = 5
    open_for: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _blocked_until: float = field(default=0.0, init=False)
    _why: str = field(default="", init=False)

    def ready(self) -> bool:
        """Whether a request may go out now."""
        return self.clock() >= self._blocked_until

    def wait_time(self) -> float:
        """Seconds until :meth:`ready` (0 when it is)."""
        return max(0.0, self._blocked_until - self.clock())

    @property
    def failures(self) -> int:
        """Failures in a row so far (a success resets it)."""
        return self._failures

    @property
    def why(self) -> str:
        """Why the guard blocks ("cooling down", "breaker open"), or "" when it does not."""
        return self._why if not self.ready() else ""

    async def call(self, request: Callable[[], Awaitable[T]], pace: Pacer | None = None) -> T:
        """Make one request unless blocked (:class:`Blocked`), and learn from how it went."""
        if not self.ready():
            raise Blocked(f"{self.name}: {self.why}")
        if pace is not None:
            await pace.wait()
        try:
            result = await request()
        except RateLimited as limited:
            self.rate_limited(limited.retry_after)
            raise
        except Failed as failure:
            self.failed(str(failure))
            raise
        except NoArt:
            self.succeeded()
            raise
        self.succeeded()
        return result

    def succeeded(self) -> None:
        """The upstream answered sensibly (a 404 counts: it is alive and knows)."""
        if self._failures >= self.threshold:
            log.info("%s answers again; breaker closed", self.name)
        self._failures = 0

    def failed(self, reason: str) -> None:
        """A timeout, a 5xx or a malformed answer."""
        self._failures += 1
        if self._failures >= self.threshold:
            self._block(self.open_for, "breaker open")
            log.warning(
                "%s failed %d times in a row (last: %s); not asking it for %.0f s",
                self.name,
                self._failures,
                reason,
                self.open_for,
            )
        else:
            log.info("%s failed (%s)", self.name, reason)

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: stay away as long as asked (or a default), without sleeping anyone."""
        seconds = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        seconds = min(seconds, MAX_RETRY_AFTER)
        self._block(seconds, "cooling down")
        log.warning("%s asked us to slow down; cooling down for %.0f s", self.name, seconds)

    def _block(self, seconds: float, why: str) -> None:
        until = self.clock() + seconds
        if until > self._blocked_until:
            self._blocked_until = until
            self._why = why


class Pacer:
    """At most ``rate`` request starts per second, evenly spaced: polite bulk work."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next request may start."""
        async with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
            if start > now:
                await self._sleep(start - now)
