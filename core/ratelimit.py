"""Per-user rate limiting, so one user's flood cannot starve everyone else.

A sliding window per user: at most ``limit`` accepted events in any ``window`` seconds. It
lives in memory (a restart forgets it, which is fine for flood control) and is bounded by
forgetting users whose events have all expired.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """``allow(key)`` is True while ``key`` stays within ``limit`` events per ``window`` s."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _events: dict[Hashable, deque[float]] = field(default_factory=dict, repr=False)

    def allow(self, key: Hashable) -> bool:
        """Record an event for ``key`` if it is within its budget; say whether it was."""
        if self.limit <= 0:
            return True
        now = self.clock()
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        if len(self._events) > 10_000:
            self._sweep(now)
        return True

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may act again (0 when it may now)."""
        events = self._events.get(key)
        if not events or len(events) < self.limit:
            return 0.0
        return max(0.0, self.window - (self.clock() - events[0]))

    def _sweep(self, now: float) -> None:
        stale = [k for k, ev in self._events.items() if not ev or now - ev[-1] >= self.window]
        for key in stale:
            del self._events[key]
