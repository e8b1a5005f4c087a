"""One object per calling thread, for the LiteRT interpreters of the serving path.

A LiteRT interpreter is not thread-safe, and one shared behind a lock makes the photo workers
queue for it (two workers run no faster than one). Each thread that asks gets its own, built
on first use (a few MB at most; the pool's threads live as long as the bot).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerThread(Generic[T]):
    """``build()``'s result, once per thread. The first is built at once by the constructing
    thread, so a bad model file fails at start-up rather than on a user's photo."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._local = threading.local()
        self._local.value = build()

    def get(self) -> T:
        """This thread's own object (built now if this thread never asked before)."""
        try:
            return self._local.value
        except AttributeError:
            value = self._local.value = self._build()
            return value
