from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from core.catalog import import_rows
from core.errors import NotYourTrack, StoreError, UnknownMode, UnknownUser
from core.moods import Mode
from core.store import Store
from core.store import store as store_module
from core.store.engine import _sqlite_pragmas
from core.store.schema import Base, Detection, Track
from data.catalog_sources import read_catalog
from tests.core import helpers
from tests.core.helpers import MOODS_HEADER, moods_line


async def test_users_are_created_once(store: Store) -> None:
    first = await store.get_or_create_user("telegram", "42")
    again = await store.get_or_create_user("telegram", "42")
    other = await store.get_or_create_user("discord", "42")
    assert first == again
    assert other.id != first.id
    assert first.mode is None
    assert first.created_at.tzinfo is not None
    assert await store.find_user("telegram", "42") == first
    assert await store.find_user("telegram", "43") is None


async def test_concurrent_first_contact_makes_one_user(store: Store) -> None:
    users = await asyncio.gather(*(store.get_or_create_user("discord", "7") for _ in range(10)))
    assert len({u.id for u in users}) == 1


async def test_mode_preference(store: Store) -> None:
    user = await store.get_or_create_user("cli", "ann")
    assert (await store.set_mode(user.id, "match")).mode is Mode.MATCH
    found = await store.find_user("cli", "ann")
    assert found is not None and found.mode is Mode.MATCH
    assert (await store.set_mode(user.id, None)).mode is None
    with pytest.raises(UnknownMode):
        await store.set_mode(user.id, "sideways")
    with pytest.raises(UnknownUser):
        await store.set_mode(user.id + 100, "lift")


async def test_last_reading_is_replaced_not_accumulated(store: Store) -> None:
    user = await store.get_or_create_user("cli", "ann")
    assert await store.find_user_and_reading("cli", "ann") == (user, None)
    await store.record_reading("cli", "ann", "sad", {"sad": 0.7, "neutral": 0.3}, faces=2)
    before = datetime.now(UTC)
    await store.record_reading("cli", "ann", "Happy", {"happy": 0.9, "sad": 0.1}, confidence=0.8)
    _, last = await store.find_user_and_reading("cli", "ann")
    assert last is not None
    assert (last.emotion, last.confidence, last.faces) == ("happy", 0.8, 1)
    assert last.probabilities == {"happy": 0.9, "sad": 0.1}
    assert before - timedelta(seconds=1) <= last.detected_at <= datetime.now(UTC)
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Detection)) == 1


async def test_forget_user_deletes_everything_about_them(store: Store, write_csv) -> None:
    lines = [moods_line(n, "Calm") for n in range(3)]
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, lines)
        await import_rows(session, read_catalog(path, moods=("calm",)).rows)
        await session.commit()
    ann = await store.get_or_create_user("telegram", "1")
    bob = await store.get_or_create_user("telegram", "2")
    for _ in range(2):
        await store.pick_and_deliver(ann.id, "calm", "fear")
    bobs = await store.pick_and_deliver(bob.id, "calm")
    await store.record_reading("telegram", "1", "fear", {"fear": 1.0})
    for entry in await store.history(ann.id):
        await store.rate(ann.id, entry.track.id, 1)
    await store.rate(bob.id, bobs.track.id, -1)

    forgotten = await store.forget_user(ann.id)
    assert (forgotten.users, forgotten.deliveries, forgotten.detections) == (1, 2, 1)
    assert forgotten.ratings == 2
    assert await store.find_user("telegram", "1") is None
    assert not await store.forget_user(ann.id)
    assert await helpers.ratings(store, ann.id) == {}
    assert await helpers.ratings(store, bob.id) == {bobs.track.id: -1}  # others keep theirs
    assert (await store.forget("telegram", "2")).deliveries == 1
    assert not await store.forget("telegram", "2")
    async with store.sessions() as session:
        # Every table that holds something about a user is empty; the catalog stays.
        for table in Base.metadata.sorted_tables:
            if table.name != Track.__tablename__:
                assert await session.scalar(select(func.count()).select_from(table)) == 0, table
        assert await session.scalar(select(func.count()).select_from(Track)) == 3


def _on_disk(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_forget_leaves_no_copy_in_the_sqlite_files(tmp_path: Path) -> None:
    """Deleted rows are zeroed (secure_delete) and the write-ahead log is emptied after a
    forget, so neither the database file nor its -wal file still holds the user's account."""
    file = tmp_path / "forget.sqlite3"
    wal = tmp_path / "forget.sqlite3-wal"
    account = "account-8675309-of-ann"
    async with await Store.open(f"sqlite+aiosqlite:///{file}") as store:
        await store.record_reading("telegram", account, "sad", {"sad": 0.9, "happy": 0.1})
        await store.get_or_create_user("telegram", "bob")
        assert account.encode() in _on_disk(file) + _on_disk(wal)  # it did reach the disk
        assert await store.forget("telegram", account)
        for path in (file, wal):
            assert account.encode() not in _on_disk(path), path.name
        assert b"bob" in _on_disk(file)  # the others' rows are in the file, not only in the log
        assert await store.find_user("telegram", "bob") is not None


async def test_a_new_sqlite_database_is_its_owners_alone(tmp_path: Path) -> None:
    """Every user's songs, ratings and readings: not readable by other accounts on the machine,
    whatever the umask (the write-ahead log takes the database file's permissions)."""
    folder = tmp_path / "data" / "moodlift"
    old_umask = os.umask(0o022)
    try:
        async with await Store.open(f"sqlite+aiosqlite:///{folder / 'moodlift.sqlite3'}") as store:
            await store.get_or_create_user("telegram", "ann")
            files = sorted(folder.iterdir())
            assert [f.name for f in files][:2] == ["moodlift.sqlite3", "moodlift.sqlite3-shm"]
            for path in (folder, *files):
                assert path.stat().st_mode & 0o077 == 0, (path.name, oct(path.stat().st_mode))
    finally:
        os.umask(old_umask)


def test_sqlite_connections_zero_what_they_delete() -> None:
    """secure_delete is set on every connection, not left to how SQLite was built (this
    Python's build may have it on by default; many builds do not)."""
    raw = sqlite3.connect(":memory:")
    try:
        raw.execute("PRAGMA secure_delete = OFF")  # the default of a build without the option
        _sqlite_pragmas(on_file=False, busy_timeout_ms=100)(raw, None)
        assert raw.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        raw.close()


async def test_forget_succeeds_while_a_reader_keeps_the_log_from_emptying(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion is committed at once; the log, kept from emptying by a reader, is emptied
    in the background as soon as the reader is done (an automatic checkpoint would leave the
    deleted rows' old pages in the -wal file)."""
    monkeypatch.setattr(store_module, "CHECKPOINT_RETRY_S", 0.05)
    file = tmp_path / "busy.sqlite3"
    wal = tmp_path / "busy.sqlite3-wal"
    ann = "account-5551234-of-ann"
    async with await Store.open(f"sqlite+aiosqlite:///{file}") as setup:
        await setup.get_or_create_user("telegram", "bob")
    reader = sqlite3.connect(file, isolation_level=None)
    store = Store(f"sqlite+aiosqlite:///{file}")  # the default 5 s busy timeout
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (1,)  # a snapshot
        await store.record_reading("telegram", ann, "sad", {"sad": 1.0})
        caplog.set_level(logging.INFO, logger="core.store.store")
        assert (await store.forget("telegram", ann)).users == 1
        assert "WAL checkpoint busy" in caplog.text
        assert await store.find_user("telegram", ann) is None
        await asyncio.sleep(0.2)
        assert ann.encode() in _on_disk(wal)  # the reader still holds the log
        reader.execute("COMMIT")
        for _ in range(100):
            if "WAL checkpoint done" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "WAL checkpoint done" in caplog.text
        assert ann.encode() not in _on_disk(wal) + _on_disk(file)
        # The checkpoint waited only briefly, and the pooled connection keeps its timeout.
        async with store.engine.connect() as connection:
            timeout = await connection.exec_driver_sql("PRAGMA busy_timeout")
            assert timeout.scalar() == 5000
    finally:
        reader.close()
        await store.close()


async def test_ratings_are_per_user_and_track_changeable_and_only_for_songs_sent(
    store: Store, write_csv
) -> None:
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Sad") for n in range(3)])
        await import_rows(session, read_catalog(path, moods=("sad",)).rows)
        await session.commit()
    ann = await store.get_or_create_user("discord", "1")
    bob = await store.get_or_create_user("discord", "2")
    sent = await store.pick_and_deliver(ann.id, "sad", "sad")
    other = next(helpers.track_id(n) for n in range(3) if helpers.track_id(n) != sent.track.id)

    first = await store.rate(ann.id, sent.track.id, 1)
    assert (first.value, first.previous) == (1, None)
    changed = await store.rate(ann.id, sent.track.id, -1)
    assert (changed.value, changed.previous) == (-1, 1)
    assert changed.created_at == first.created_at <= changed.updated_at
    assert await helpers.ratings(store, ann.id) == {sent.track.id: -1}  # still one row

    with pytest.raises(NotYourTrack):  # never sent to Ann
        await store.rate(ann.id, other, 1)
    with pytest.raises(NotYourTrack):  # sent to Ann, not to Bob
        await store.rate(bob.id, sent.track.id, 1)
    with pytest.raises(NotYourTrack):
        await store.rate(ann.id, "x' OR 1=1 --", 1)
    with pytest.raises(ValueError):
        await store.rate(ann.id, sent.track.id, 5)
    assert await helpers.ratings(store, bob.id) == {}


async def test_a_withdrawn_delivery_leaves_the_history_and_comes_again(
    store: Store, write_csv
) -> None:
    """A card the chat platform refused: the song is not in the history, and the next pick of
    the round can give it (the round is not over: one song of two was heard)."""
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Calm") for n in range(2)])
        await import_rows(session, read_catalog(path, moods=("calm",)).rows)
        await session.commit()
    ann = await store.get_or_create_user("telegram", "1")
    heard = await store.pick_and_deliver(ann.id, "calm")
    lost = await store.pick_and_deliver(ann.id, "calm")
    assert await store.withdraw_delivery(ann.id, lost.track.id)
    assert [e.track.id for e in await store.history(ann.id)] == [heard.track.id]
    again = await store.pick_and_deliver(ann.id, "calm")
    assert (again.track.id, again.round, again.new_round) == (lost.track.id, 1, False)
    assert not await store.withdraw_delivery(ann.id, "never-sent")


async def test_history_newest_first_with_emotion_mood_and_rating(store: Store, write_csv) -> None:
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Calm") for n in range(4)])
        await import_rows(session, read_catalog(path, moods=("calm",)).rows)
        await session.commit()
    ann = await store.get_or_create_user("telegram", "1")
    assert await store.history(ann.id) == []
    picks = [await store.pick_and_deliver(ann.id, "calm", "fear") for _ in range(3)]
    picks.append(await store.pick_and_deliver(ann.id, "calm"))
    await store.rate(ann.id, picks[1].track.id, 1)
    await store.rate(ann.id, picks[2].track.id, -1)

    history = await store.history(ann.id)
    assert [e.track.id for e in history] == [p.track.id for p in reversed(picks)]
    assert [e.rating for e in history] == [None, -1, 1, None]
    assert [e.emotion for e in history] == [None, "fear", "fear", "fear"]
    assert {e.mood for e in history} == {"calm"}
    assert history[0].delivered_at >= history[-1].delivered_at
    assert history[0].track.spotify_url.startswith("https://open.spotify.com/track/")
    assert [e.track.id for e in await store.history(ann.id, limit=2)] == [
        p.track.id for p in reversed(picks[2:])
    ]


async def test_track_art_cache(store: Store, write_csv) -> None:
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Sad")])
        await import_rows(session, read_catalog(path, moods=("sad",)).rows)
        await session.commit()
    track_id = helpers.track_id(1)
    await store.set_track_art(track_id, "https://i.scdn.co/image/x")
    track = await store.get_track(track_id)
    assert track is not None
    assert track.art_url == "https://i.scdn.co/image/x"
    assert track.art_checked_at is not None and track.art_checked_at.tzinfo is not None
    assert await store.get_track("missing") is None


async def test_open_from_settings_upgrades(tmp_path) -> None:
    from core.config import load_settings

    settings = load_settings(env={"MOODLIFT_PATHS_DATA_DIR": str(tmp_path / "data")})
    store = await Store.open(settings)
    try:
        assert (await store.catalog_counts()).total == 0
    finally:
        await store.close()
    assert (tmp_path / "data" / "moodlift.sqlite3").is_file()


async def test_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        await Store.open("nosuchdialect+x://")


async def test_writes_wait_out_a_writer_that_outlasts_the_busy_timeout(tmp_path, caplog) -> None:
    """Another connection holds SQLite's write lock longer than the busy timeout: the store's
    write units back off and retry instead of failing the user's request."""
    import sqlite3
    import threading

    url = f"sqlite+aiosqlite:///{tmp_path / 'busy.sqlite3'}"
    async with await Store.open(url) as setup:
        first = await setup.get_or_create_user("telegram", "1")
    store = Store(url, busy_timeout_ms=20)
    try:
        held = threading.Event()

        def hold_write_lock() -> None:
            other = sqlite3.connect(tmp_path / "busy.sqlite3", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            held.set()
            threading.Event().wait(0.3)
            other.execute("COMMIT")
            other.close()

        holder = threading.Thread(target=hold_write_lock)
        holder.start()
        await asyncio.to_thread(held.wait)
        user = await store.get_or_create_user("discord", "2")
        _, reading = await store.record_reading("telegram", "1", "sad", {"sad": 0.9, "happy": 0.1})
        await asyncio.to_thread(holder.join)
        assert user.platform == "discord"
        assert "database busy; retrying" in caplog.text  # the lock really outlasted the timeout
        assert await store.find_user_and_reading("telegram", "1") == (first, reading)
    finally:
        await store.close()


def _locked() -> OperationalError:
    return OperationalError("COMMIT", None, sqlite3.OperationalError("database is locked"))


class _FlakySessions:
    """The store's session factory, whose next ``failures`` sessions fail their commit as a
    database locked past its busy timeout does; counts the sessions (the unit's runs)."""

    def __init__(self, store: Store, failures: int) -> None:
        self.sessions = store.sessions
        self.failures = failures
        self.runs = 0

    def __call__(self) -> AsyncSession:
        session = self.sessions()
        self.runs += 1
        if self.failures:
            self.failures -= 1

            async def commit() -> None:
                raise _locked()

            session.commit = commit  # type: ignore[method-assign]
        return session


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_BACKOFF", 0.0)


@pytest.mark.usefixtures("no_backoff")
async def test_forget_reruns_after_a_transient_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ann = await store.get_or_create_user("telegram", "ann")
    flaky = _FlakySessions(store, failures=store_module.BUSY_ATTEMPTS - 1)
    store.sessions = flaky  # type: ignore[assignment]
    assert (await store.forget_user(ann.id)).users == 1
    assert flaky.runs == store_module.BUSY_ATTEMPTS
    assert caplog.text.count("database busy; retrying") == store_module.BUSY_ATTEMPTS - 1
    assert await store.find_user("telegram", "ann") is None


@pytest.mark.usefixtures("no_backoff")
async def test_a_lasting_transient_error_is_a_store_error_after_few_attempts(
    store: Store, write_csv
) -> None:
    """Transient errors have their own small budget, also for picks (whose budget for unique-key
    conflicts is large): on SQLite each attempt may have waited the whole busy timeout."""
    async with store.sessions() as session:
        path = write_csv("m.csv", MOODS_HEADER, [moods_line(n, "Calm") for n in range(3)])
        await import_rows(session, read_catalog(path, moods=("calm",)).rows)
        await session.commit()
    ann = await store.get_or_create_user("telegram", "ann")
    sessions = store.sessions
    for work in (lambda: store.pick_and_deliver(ann.id, "calm"), lambda: store.forget_user(ann.id)):
        flaky = _FlakySessions(store, failures=1000)
        store.sessions = flaky  # type: ignore[assignment]
        with pytest.raises(StoreError, match="database busy after 5 attempts"):
            await work()
        assert flaky.runs == store_module.BUSY_ATTEMPTS
        store.sessions = sessions
    assert await store.find_user("telegram", "ann") == ann  # nothing was deleted
    assert await store.history(ann.id) == []


@pytest.mark.usefixtures("no_backoff")
async def test_conflicts_and_transient_errors_have_budgets_of_their_own(store: Store) -> None:
    """One loop, two counts: many conflicts then some transient errors still succeed; the
    transient ones alone end it at BUSY_ATTEMPTS; any other database error at once."""
    plan: list[Exception | None] = []
    runs = 0

    async def unit(session: AsyncSession) -> str:
        nonlocal runs
        runs += 1
        failure = plan.pop(0) if plan else None
        if failure is not None:
            raise failure
        return "done"

    conflict = IntegrityError("INSERT", None, sqlite3.IntegrityError("UNIQUE constraint failed"))
    busy = store_module.BUSY_ATTEMPTS
    plan[:] = [conflict] * 50 + [_locked()] * (busy - 1) + [conflict] * 40
    assert await store._write("test", unit, conflicts=100) == "done"
    assert runs == 50 + busy - 1 + 40 + 1

    runs = 0
    plan[:] = [_locked()] * (busy + 10)
    with pytest.raises(StoreError, match=f"database busy after {busy} attempts"):
        await store._write("test", unit, conflicts=100)
    assert runs == busy

    runs = 0
    plan[:] = [conflict] * 10
    with pytest.raises(StoreError, match="still conflicting after 3 attempts"):
        await store._write("test", unit, conflicts=3)
    assert runs == 3

    runs = 0
    plan[:] = [OperationalError("SELECT", None, sqlite3.OperationalError("no such table: x"))]
    with pytest.raises(StoreError, match="no such table"):
        await store._write("test", unit)
    assert runs == 1


async def test_forget_under_a_lock_that_outlasts_every_attempt_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SQLite write lock held all along: the typed error, not a raw OperationalError."""
    monkeypatch.setattr(store_module, "BUSY_BACKOFF", 0.001)
    file = tmp_path / "locked.sqlite3"
    async with await Store.open(f"sqlite+aiosqlite:///{file}") as setup:
        ann = await setup.get_or_create_user("telegram", "ann")
    other = sqlite3.connect(file, isolation_level=None)
    store = Store(f"sqlite+aiosqlite:///{file}", busy_timeout_ms=10)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="cannot forget user"):
            await store.forget_user(ann.id)
        other.execute("COMMIT")
        assert (await store.forget_user(ann.id)).users == 1
    finally:
        other.close()
        await store.close()


async def test_two_instances_meeting_a_new_user_at_once(db_url: str) -> None:
    """First contact and first reading of one user arriving on two instances together."""
    async with await Store.open(db_url) as first, await Store.open(db_url) as second:
        users = await asyncio.gather(
            *(s.get_or_create_user("telegram", "9") for s in (first, second) * 5)
        )
        assert len({u.id for u in users}) == 1
        readings = await asyncio.gather(
            *(
                s.record_reading("telegram", "9", emotion, {emotion: 0.9})
                for s, emotion in zip((first, second) * 3, ["sad", "happy"] * 3, strict=True)
            )
        )
        assert {user.id for user, _ in readings} == {users[0].id}
        _, last = await second.find_user_and_reading("telegram", "9")
    assert last is not None and last.emotion in {r.emotion for _, r in readings}


async def test_record_reading_creates_the_user_and_replaces_their_reading(store: Store) -> None:
    user, reading = await store.record_reading("telegram", "5", "Sad", {"sad": 0.8, "happy": 0.2})
    assert await store.find_user("telegram", "5") == user
    assert (reading.emotion, reading.confidence, reading.faces) == ("sad", 0.8, 1)
    again, _ = await store.record_reading("telegram", "5", "happy", {"happy": 0.6}, faces=3)
    assert again == user
    _, last = await store.find_user_and_reading("telegram", "5")
    assert last is not None and (last.emotion, last.confidence, last.faces) == ("happy", 0.6, 3)


async def test_a_user_and_their_reading_in_one_read(store: Store) -> None:
    assert await store.find_user_and_reading("telegram", "7") == (None, None)
    user = await store.get_or_create_user("telegram", "7")
    assert await store.find_user_and_reading("telegram", "7") == (user, None)
    _, reading = await store.record_reading("telegram", "7", "sad", {"sad": 0.7, "happy": 0.3})
    assert await store.find_user_and_reading("telegram", "7") == (user, reading)
    assert await store.find_user_and_reading("discord", "7") == (None, None)


async def test_a_new_users_first_selfies_on_two_instances_at_once(db_url: str) -> None:
    """The photo path's one transaction: concurrent first contact and first reading."""
    async with await Store.open(db_url) as first, await Store.open(db_url) as second:
        results = await asyncio.gather(
            *(
                s.record_reading("telegram", "11", emotion, {emotion: 0.9})
                for s, emotion in zip((first, second) * 4, ["sad", "happy"] * 4, strict=True)
            )
        )
        users = {user.id for user, _ in results}
        assert len(users) == 1
        assert (await second.find_user_and_reading("telegram", "11"))[0].id == users.pop()
        _, last = await second.find_user_and_reading("telegram", "11")
    assert last is not None and last.emotion in {"sad", "happy"}
