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
    """``build()``'s result, once per thread.

    The first is built at once, so a bad model file fails at start-up rather than on a user's
    photo, and is handed to the first thread that asks: the thread that constructs (the event
    loop's, at start-up) never reads a photo itself, and a copy kept for it would hold a whole
    interpreter (its arena and XNNPACK's packed weights, ~5-7 MB per model) for nothing.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._local = threading.local()
        self._spare: list[T] = [build()]

    def get(self) -> T:
        """This thread's own object (the spare, or one built now, if it never asked before)."""
        try:
            return self._local.value
        except AttributeError:
            try:
                value = self._spare.pop()  # atomic: only one thread gets the spare
            except IndexError:
                value = self._build()
            self._local.value = value
            return value
