"""MoodLifter.rate and .history: the platform-neutral replies both adapters render."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.catalog import import_sources
from core.config import Settings
from core.replies import History, Notice, NoticeKind
from core.service import (
    BAD_HISTORY_COUNT,
    HISTORY_MAX,
    NO_HISTORY,
    NOT_RATABLE,
    RATED,
    MoodLifter,
    UserRef,
)
from core.store import Store
from data.catalog_sources import SourceSpec
from tests.core import helpers
from tests.core.helpers import MOODS_HEADER, moods_line

ANN = UserRef("telegram", "1")
BOB = UserRef("telegram", "2")


@pytest.fixture
async def service(db_url: str, write_csv, tmp_path: Path) -> AsyncIterator[MoodLifter]:
    store = await Store.open(db_url)
    path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Sad") for n in range(120)])
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    # rate and history never read a photo, so no face model is needed here.
    lifter = MoodLifter(Settings(), store, reader=None)  # type: ignore[arg-type]
    try:
        yield lifter
    finally:
        await lifter.close()


async def _send(service: MoodLifter, user: UserRef, n: int) -> list[str]:
    account = await service.store.get_or_create_user(user.platform, user.user_id)
    return [(await service.recommender.for_emotion(account, "sad")).track_id for _ in range(n)]


async def test_rate_change_and_see_it_in_history(service: MoodLifter) -> None:
    (first, second) = await _send(service, ANN, 2)
    assert await service.rate(ANN, first, 1) == Notice(NoticeKind.RATED, RATED[1])
    await service.rate(ANN, second, 1)
    assert await service.rate(ANN, second, -1) == Notice(NoticeKind.RATED, RATED[-1])

    history = await service.history(ANN)
    assert isinstance(history, History) and not history.capped
    assert [(i.track_id, i.rating) for i in history.items] == [(second, -1), (first, 1)]
    assert all(i.emotion == "sad" and i.mood == "sad" for i in history.items)
    assert history.items[0].spotify_url.endswith(second)


async def test_nobody_rates_for_someone_else(service: MoodLifter) -> None:
    (anns,) = await _send(service, ANN, 1)
    refused = Notice(NoticeKind.NOT_RATABLE, NOT_RATABLE)
    assert await service.rate(BOB, anns, 1) == refused  # Bob never talked to the bot
    await service.store.get_or_create_user(BOB.platform, BOB.user_id)
    assert await service.rate(BOB, anns, 1) == refused  # ... nor was he sent Ann's song
    assert await service.rate(ANN, "0" * 22, 1) == refused
    assert await service.rate(ANN, anns, 7) == refused
    ann = await service.store.find_user("telegram", "1")
    assert ann is not None and await helpers.ratings(service.store, ann.id) == {}


@pytest.mark.parametrize("junk", ["abc", "-5", "0", "1.5", "5 songs", "٣", "50; DROP TABLE"])
async def test_history_count_junk_gets_a_friendly_reply(service: MoodLifter, junk: str) -> None:
    await _send(service, ANN, 1)
    assert await service.history(ANN, junk) == Notice(NoticeKind.BAD_ARGUMENT, BAD_HISTORY_COUNT)


async def test_history_default_more_and_the_cap(service: MoodLifter) -> None:
    assert await service.history(ANN) == Notice(NoticeKind.NO_HISTORY, NO_HISTORY)
    sent = await _send(service, ANN, 110)
    default = await service.history(ANN, " ")
    fifty = await service.history(ANN, "50")
    too_many = await service.history(ANN, "1000000000000")
    assert isinstance(default, History) and isinstance(fifty, History)
    assert isinstance(too_many, History)
    assert [i.track_id for i in default.items] == sent[::-1][:10]
    assert len(fifty.items) == 50 and not fifty.capped
    assert len(too_many.items) == HISTORY_MAX and too_many.capped
    assert len((await service.history(ANN, 3)).items) == 3  # type: ignore[union-attr]
