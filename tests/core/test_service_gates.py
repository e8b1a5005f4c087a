"""MoodLifter's gates: the photo budget checked before a download, the flood gate on every
action, and an answer whose user was forgotten while it was being made."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core import service as service_module
from core.catalog import import_sources
from core.config import LimitsSettings, Settings
from core.replies import Notice, NoticeKind, TrackCard
from core.service import (
    CATALOG_EMPTY,
    FORGET_NOT_YET,
    FORGOTTEN,
    NEED_SELFIE,
    SLOW_DOWN_SAID_FOR,
    STILL_READING,
    CommandSyntax,
    MoodLifter,
    Throttle,
    UserRef,
    asks_for_more,
)
from core.store import Store
from data.catalog_sources import SourceSpec
from tests.core.helpers import MOODS_HEADER, moods_line

ANN = UserRef("telegram", "1")
BOB = UserRef("discord", "1")  # same id, other platform: another person
SYNTAX = CommandSyntax(mode="/mode {mode}", history="/history {count}")


@pytest.fixture
async def service(db_url: str, write_csv, tmp_path: Path) -> AsyncIterator[MoodLifter]:
    store = await Store.open(db_url)
    path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Sad") for n in range(10)])
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    limits = LimitsSettings(photos_per_minute=2, actions_per_minute=3)
    # The gates never read a photo, so no face model is needed here.
    lifter = MoodLifter(Settings(limits=limits), store, reader=None)  # type: ignore[arg-type]
    try:
        yield lifter
    finally:
        await lifter.close()


def test_photos_beyond_the_budget_are_refused_before_anything_is_read(
    service: MoodLifter,
) -> None:
    assert service.admit(ANN) == Throttle(allowed=True)
    assert service.admit(ANN).allowed
    refused = service.admit(ANN)
    assert not refused.allowed and refused.notice is not None
    assert refused.notice.kind is NoticeKind.SLOW_DOWN
    assert "60 seconds" in refused.notice.text or "59 seconds" in refused.notice.text
    assert service.admit(BOB).allowed  # one user's budget is theirs alone


async def test_a_photo_is_read_into_a_song_until_the_budget_says_slow_down(
    db_url: str, write_csv, tmp_path: Path
) -> None:
    """``photo``: admit, read, pick — and every photo beyond the budget hears why."""
    import io

    from PIL import Image
    from skimage import data as skdata

    from core.emotion import EmotionClassifier
    from core.faces import FaceDetector
    from core.reading import PhotoReader
    from tests.conftest import REPO_ROOT

    store = await Store.open(db_url)
    moods = ("Calm", "Happy", "Energetic", "Sad")
    lines = [moods_line(n, moods[n % 4]) for n in range(8)]
    await import_sources(
        store, [SourceSpec(str(write_csv("m.csv", MOODS_HEADER, lines)))], tmp_path
    )
    reader = PhotoReader(FaceDetector(), EmotionClassifier(REPO_ROOT / "models" / "emotion.tflite"))
    settings = Settings(limits=LimitsSettings(photos_per_minute=1))
    lifter = MoodLifter(settings, store, reader=reader)
    selfie = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(selfie, "JPEG")
    try:
        card = await lifter.photo(ANN, selfie.getvalue())
        assert isinstance(card, TrackCard) and card.emotion == "happy"
        for _ in range(2):  # each hears it: a caller of photo() has nothing else to say
            refused = await lifter.photo(ANN, selfie.getvalue())
            assert isinstance(refused, Notice) and refused.kind is NoticeKind.SLOW_DOWN
    finally:
        await lifter.close()


def test_a_burst_of_refused_photos_is_told_once_and_later_ones_again(
    service: MoodLifter,
) -> None:
    now = [1000.0]
    service._limiter.clock = service._told_photos_slow_down.clock = lambda: now[0]
    assert service.admit(ANN).allowed and service.admit(ANN).allowed
    burst = [service.admit(ANN) for _ in range(5)]
    assert not any(verdict.allowed for verdict in burst)
    assert [verdict.notice is not None for verdict in burst] == [True, False, False, False, False]
    assert service.admit(ANN, every_refusal=True).notice is not None  # /selfie: each is answered
    now[0] += SLOW_DOWN_SAID_FOR
    later = service.admit(ANN)
    assert not later.allowed and later.notice is not None  # a while later: said again


def test_a_wait_of_one_second_is_said_so(service: MoodLifter) -> None:
    now = [1000.0]
    service._limiter.clock = lambda: now[0]
    assert service.admit(ANN).allowed and service.admit(ANN).allowed
    now[0] += 59.4  # the first photo leaves the minute's window in 0.6 s
    refused = service.admit(ANN).notice
    assert isinstance(refused, Notice) and "Give me 1 second and" in refused.text


def test_a_flood_is_told_once_then_dropped(service: MoodLifter) -> None:
    verdicts = [service.throttle(ANN) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False, False]
    told = [v.notice for v in verdicts if v.notice is not None]
    assert len(told) == 1 and told[0].kind is NoticeKind.SLOW_DOWN
    assert "a lot at once" in told[0].text
    assert service.throttle(BOB).allowed


async def test_a_user_forgotten_while_their_song_is_picked_is_asked_to_start_again(
    service: MoodLifter,
) -> None:
    account = await service.store.get_or_create_user(ANN.platform, ANN.user_id)
    await service.forget(ANN, confirmed=True)  # /forget lands while the photo is being read
    reply = await service._card(account, "sad", 0.9)
    assert reply == Notice(NoticeKind.NEED_SELFIE, NEED_SELFIE)
    assert await service.store.find_user(ANN.platform, ANN.user_id) is None


async def test_a_mood_with_no_songs_yet_is_named(service: MoodLifter) -> None:
    """The catalog here has only sad songs; a happy face (lifted: happy songs) gets none."""
    account = await service.store.get_or_create_user(ANN.platform, ANN.user_id)
    reply = await service._card(account, "happy", 0.9)
    assert reply == Notice(NoticeKind.CATALOG_EMPTY, CATALOG_EMPTY.format(mood="happy"))
    assert "no happy songs yet" in reply.text


async def test_a_forget_sent_while_a_song_is_picked_waits_for_the_pick(
    write_csv, tmp_path: Path
) -> None:
    """/more's pick is held up by another writer's lock; a /forget sent meanwhile deletes
    after the pick is written, never before it (a pick landing after the deletion would store
    a song under a forgotten id, which SQLite hands the next new user)."""
    db = tmp_path / "moodlift.sqlite3"
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Sad") for n in range(3)])
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    lifter = MoodLifter(Settings(), store, reader=None)  # type: ignore[arg-type]
    try:
        await store.record_reading(ANN.platform, ANN.user_id, "sad", {"sad": 1.0})
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
        more = asyncio.create_task(lifter.more(ANN))
        await asyncio.sleep(0.3)  # the pick waits for the lock
        forget = asyncio.create_task(lifter.forget(ANN, confirmed=True))
        await asyncio.sleep(0.3)
        writer.execute("COMMIT")
        writer.close()
        card, forgotten = await more, await forget
        assert isinstance(card, TrackCard)
        assert forgotten == Notice(NoticeKind.FORGOTTEN, FORGOTTEN)
        assert await store.find_user(ANN.platform, ANN.user_id) is None
        with sqlite3.connect(db) as check:
            assert check.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    finally:
        await lifter.close()


async def test_a_more_sent_while_a_forget_waits_comes_after_the_deletion(
    service: MoodLifter,
) -> None:
    """/forget waits for a photo on its way; a /more sent during that wait is answered as after
    the deletion (before, it ran beside it, and its pick could land after it)."""
    await service.store.record_reading(ANN.platform, ANN.user_id, "sad", {"sad": 1.0})
    async with service.reading(ANN):  # a photo of Ann's on its way
        forget = asyncio.create_task(service.forget(ANN, confirmed=True))
        await asyncio.sleep(0.05)
        more = asyncio.create_task(service.more(ANN))
        await asyncio.sleep(0.05)
        assert not forget.done() and not more.done()
    assert await forget == Notice(NoticeKind.FORGOTTEN, FORGOTTEN)
    assert await more == Notice(NoticeKind.NEED_SELFIE, NEED_SELFIE)
    assert await service.store.find_user(ANN.platform, ANN.user_id) is None


async def test_a_selfie_sent_while_a_forget_deletes_is_kept(service: MoodLifter) -> None:
    """ "Yes, forget me", then a new selfie while an older one is still on its way: the deletion
    waits for the older one, the new one waits for the deletion and is stored after it."""
    await service.store.record_reading(ANN.platform, ANN.user_id, "sad", {"sad": 1.0})
    async with service.reading(ANN):  # the older photo, on its way
        forget = asyncio.create_task(service.forget(ANN, confirmed=True))
        await asyncio.sleep(0.05)

        async def new_selfie() -> None:
            async with service.reading(ANN):  # the adapter holds this from the download on
                await service.store.record_reading(ANN.platform, ANN.user_id, "happy", {})

        selfie = asyncio.create_task(new_selfie())
        mode = asyncio.create_task(service.set_mode(ANN, "match", SYNTAX))
        await asyncio.sleep(0.05)
        assert not forget.done() and not selfie.done() and not mode.done()
    assert await forget == Notice(NoticeKind.FORGOTTEN, FORGOTTEN)
    await selfie
    await mode
    account, reading = await service.store.find_user_and_reading(ANN.platform, ANN.user_id)
    assert reading is not None and reading.emotion == "happy"  # after the deletion
    assert account is not None and account.mode is not None


async def test_a_first_selfie_slower_than_the_wait_is_not_denied(
    service: MoodLifter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first selfie still on its way when /more, /mood and /forget stop waiting for it: they
    say it is coming (and /forget asks), instead of "send a selfie first" or "nothing
    stored"."""
    monkeypatch.setattr(service_module, "READING_WAIT", 0.05)
    async with service.reading(ANN):
        assert await service.more(ANN) == Notice(NoticeKind.STILL_READING, STILL_READING)
        assert await service.mood(ANN) == Notice(NoticeKind.STILL_READING, STILL_READING)
        asked = await service.forget(ANN, confirmed=False)
        assert asked.kind is NoticeKind.CONFIRM_FORGET
    assert (await service.more(ANN)).kind is NoticeKind.NEED_SELFIE  # nothing on its way now
    assert (await service.forget(ANN, confirmed=False)).kind is NoticeKind.FORGOTTEN


async def test_a_yes_while_a_selfie_is_still_on_its_way_after_the_wait_deletes_nothing(
    service: MoodLifter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Yes, forget me" while a photo's work outlasts the wait: deleting then would be undone
    by what that photo stores, so nothing is deleted and the user is told to ask again; once
    the photo is answered, "Yes" deletes everything, its reading too."""
    monkeypatch.setattr(service_module, "READING_WAIT", 0.05)
    await service.store.record_reading(ANN.platform, ANN.user_id, "sad", {"sad": 1.0})
    async with service.reading(ANN):  # a slow photo of Ann's, on its way
        answer = await service.forget(ANN, confirmed=True)
        assert answer == Notice(NoticeKind.STILL_READING, FORGET_NOT_YET)
        assert await service.store.find_user(ANN.platform, ANN.user_id) is not None
        await service.store.record_reading(ANN.platform, ANN.user_id, "happy", {})  # it lands
    assert await service.forget(ANN, confirmed=True) == Notice(NoticeKind.FORGOTTEN, FORGOTTEN)
    assert await service.store.find_user(ANN.platform, ANN.user_id) is None


@pytest.mark.parametrize(
    "words",
    ["more", "More!", "/more", "another song please", "one more song", "next, please", ", more"],
)
def test_words_that_ask_for_another_song(words: str) -> None:
    assert asks_for_more(words)


@pytest.mark.parametrize(
    "words", ["no more", "I want more", "moreover", "next time maybe", "hello", "more more", ""]
)
def test_words_that_do_not(words: str) -> None:
    assert not asks_for_more(words)
