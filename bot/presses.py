"""Button presses in flight, so a double tap is one press on every platform."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator


class PressesInFlight:
    """The presses being handled, by a key the adapter chooses (the message, the user and, on
    Telegram, which button).

    A double tap's second press arrives while the first is still being handled: it is dropped
    (the adapter only stops its spinner), so it neither brings a second song nor overwrites
    /forget's "Done" with "nothing stored". A press after the first has finished counts again.
    """

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()

    @contextlib.contextmanager
    def first(self, key: Hashable) -> Iterator[bool]:
        """``with presses.first(key) as first:`` — False while a press with ``key`` is handled."""
        if key in self._keys:
            yield False
            return
        self._keys.add(key)
        try:
            yield True
        finally:
            self._keys.discard(key)
