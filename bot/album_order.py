"""Answer the photos of one Telegram album in the order they were sent.

Telegram delivers an album (a media group) as one message per photo, and the bot handles
updates concurrently, so the photos are read side by side and their cards went out in
whichever order the readings finished (2, 1, 3). Each photo now waits, after its reading and
before its answer, until the album's earlier photos have been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

ANSWER_WAIT = 30.0  # seconds a photo waits for its album's earlier ones before answering anyway


class AlbumOrder:
    """The photos of each album still being handled, by message id."""

    def __init__(self) -> None:
        self._pending: dict[tuple[int, str], set[int]] = {}
        self._answered = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def handling(
        self, chat_id: int, album: str | None, message_id: int
    ) -> AsyncIterator[None]:
        """Hold for the whole handling of one message (entered before its first await, so the
        album's messages register in the order they came)."""
        if album is None:
            yield
            return
        key = (chat_id, album)
        self._pending.setdefault(key, set()).add(message_id)
        try:
            yield
        finally:
            pending = self._pending.get(key, set())
            pending.discard(message_id)
            if not pending:
                self._pending.pop(key, None)
            async with self._answered:
                self._answered.notify_all()

    async def turn(self, chat_id: int, album: str | None, message_id: int) -> None:
        """Wait (at most :data:`ANSWER_WAIT`) until the album's earlier messages are answered."""
        if album is None:
            return
        key = (chat_id, album)

        def earlier_done() -> bool:
            return not any(other < message_id for other in self._pending.get(key, ()))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANSWER_WAIT), self._answered:
                await self._answered.wait_for(earlier_done)
