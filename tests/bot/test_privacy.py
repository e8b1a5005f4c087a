"""Photos never touch the disk: after the bot has read several, no trace of them is found.

The real Telegram Application and core run with every folder they may write to inside
tmp_path: the SQLite file (and its WAL), the data and cache folders, and a private temp folder
(``TMPDIR`` and :data:`tempfile.tempdir`). After photos of several kinds have been answered,
every file there is searched for byte runs of each photo and for picture file signatures, and
every value in every table of the database for binary data or anything large.
"""

from __future__ import annotations

import io
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bot.telegram import build_application, polling
from core.catalog import ensure_catalog
from core.config import LimitsSettings, Secret, Settings, TelegramSettings
from core.service import MoodLifter
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import FakeTelegramAPI, user

WAIT = 120.0
SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"GIF8": "GIF", b"RIFF": "RIFF/WebP"}
RUN = 24  # bytes: a run this long of compressed image data does not occur by chance


def encode(rgb: Any, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, fmt, **options)
    return buffer.getvalue()


def photos() -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, MIME type, how it is sent): faces, no face, and a broken one."""
    astronaut = skdata.astronaut()
    noisy = np.clip(
        astronaut + np.random.default_rng(1).normal(0, 4, astronaut.shape), 0, 255
    ).astype(np.uint8)
    jpeg = encode(noisy, "JPEG", quality=92)
    return {
        "selfie photo": (jpeg, "image/jpeg", "photo"),
        "selfie PNG file": (encode(noisy[:, ::-1], "PNG"), "image/png", "document"),
        "selfie WebP file": (encode(noisy[8:, 8:], "WEBP", quality=90), "image/webp", "document"),
        "no face": (encode(skdata.coffee(), "JPEG", quality=92), "image/jpeg", "photo"),
        "broken JPEG": (jpeg[: len(jpeg) // 2], "image/jpeg", "document"),
    }


def runs(data: bytes, count: int = 8) -> list[bytes]:
    """``count`` byte runs spread over the middle of ``data`` (past headers, inside the
    compressed pixels)."""
    start, end = len(data) // 5, len(data) * 4 // 5 - RUN
    return [data[offset : offset + RUN] for offset in np.linspace(start, end, count).astype(int)]


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The only temp folder the bot can use in this test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path, private_tmp: Path) -> Settings:
    return service_settings(tmp_path, music_dir, LimitsSettings(photos_per_minute=100))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


async def test_no_trace_of_any_photo_is_left_on_disk_or_in_the_database(
    tmp_path: Path, settings: Settings, fake: FakeTelegramAPI
) -> None:
    sent = photos()
    lifter = await MoodLifter.create(settings)
    try:
        await ensure_catalog(settings, lifter.store)
        telegram = TelegramSettings(
            token=Secret(fake.token), api_url=fake.base_url, file_url=fake.base_file_url
        )
        async with polling(build_application(lifter, telegram), poll_timeout=1):
            alice = user(4001, "Alice")
            for n, (data, mime, how) in enumerate(sent.values(), start=1):
                if how == "photo":
                    fake.send_photo(alice, data)
                else:
                    fake.send_document(alice, data, mime_type=mime, file_name="me.bin")
                await fake.wait_for_replies(alice["id"], n, within=WAIT)
            for n, command in enumerate(("/mood", "/more"), start=len(sent) + 1):
                fake.send_command(alice, command)
                await fake.wait_for_replies(alice["id"], n, within=WAIT)
            kinds = [r.method for r in fake.replies(alice["id"])]
            # Three cards, two notices (no face, broken), the /mood chart and one more card.
            assert kinds.count("sendPhoto") == 5 and kinds.count("sendMessage") == 2, kinds
            assert not traces(tmp_path, sent)  # while the bot runs (the WAL holds recent writes)

            # /forget, confirmed: no row of any table refers to Alice any more.
            database = tmp_path / "moodlift.sqlite3"
            alice_id = store_id(database, str(alice["id"]))
            before = rows_about(database, alice_id, str(alice["id"]))
            assert before["users"] == 1 and before["detections"] == 1, before
            assert before["deliveries"] == 4, before  # three selfies and /more
            fake.send_command(alice, "/forget")
            (question,) = await fake.wait_for(
                lambda c: any("forget" in b.get("callback_data", "") for b in c.buttons),
                within=WAIT,
            )
            fake.press_button(alice, question, question.buttons[0]["callback_data"])
            await fake.wait_for("editMessageText", within=WAIT)
    finally:
        await lifter.close()

    assert not traces(tmp_path, sent)
    assert rows_about(database, alice_id, str(alice["id"])) == {}


def traces(folder: Path, sent: dict[str, tuple[bytes, str, str]]) -> list[str]:
    """Everything under ``folder`` that looks like a photo, or holds bytes of one."""
    found = []
    files = [path for path in folder.rglob("*") if path.is_file()]
    databases = [path for path in files if path.suffix == ".sqlite3"]
    assert databases, files  # the bot did write where it was told to
    for path in files:
        content = path.read_bytes()
        found += [
            f"{kind} file left at {path}"
            for signature, kind in SIGNATURES.items()
            if content.startswith(signature)
        ]
        found += [
            f"bytes of the {name} found in {path}"
            for name, (data, _, _) in sent.items()
            if any(run in content for run in runs(data))
        ]
    for database in databases:
        with sqlite3.connect(database) as connection:
            tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for (table,) in tables.fetchall():
                for row in connection.execute(f'SELECT * FROM "{table}"'):
                    if any(isinstance(v, bytes) or len(str(v)) > 2000 for v in row):
                        found.append(f"binary or large value in {table}: {str(row)[:200]}")
    return found


def store_id(database: Path, platform_user_id: str) -> int:
    with sqlite3.connect(database) as connection:
        query = "SELECT id FROM users WHERE platform_user_id = ?"
        (found,) = connection.execute(query, (platform_user_id,)).fetchone()
    return int(found)


def rows_about(database: Path, store_id: int, platform_user_id: str) -> dict[str, int]:
    """Rows per table that refer to the user: in ``users``, or by a ``user_id`` column. Every
    table is looked at, so a table added later is covered too."""
    found = {}
    with sqlite3.connect(database) as connection:
        found["users"] = connection.execute(
            "SELECT count(*) FROM users WHERE platform_user_id = ? OR id = ?",
            (platform_user_id, store_id),
        ).fetchone()[0]
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            if "user_id" in columns:
                found[table] = connection.execute(
                    f'SELECT count(*) FROM "{table}" WHERE user_id = ?', (store_id,)
                ).fetchone()[0]
    return {table: n for table, n in found.items() if n}


def test_the_scan_would_find_a_photo_kept_by_mistake(tmp_path: Path) -> None:
    """The search above is not blind: a photo saved whole, one saved without its header, and
    a photo stored in the database are all found."""
    sent = photos()
    jpeg, png = sent["selfie photo"][0], sent["selfie PNG file"][0]
    (tmp_path / "upload.jpg").write_bytes(jpeg)
    (tmp_path / "chunk.bin").write_bytes(png[100:])
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        connection.execute("CREATE TABLE detections (user_id INTEGER, face BLOB)")
        connection.execute("INSERT INTO detections VALUES (1, ?)", (b"\x00" * 64,))
    found = traces(tmp_path, sent)
    assert any("JPEG file left" in f and "upload.jpg" in f for f in found), found
    assert any("selfie PNG file found in" in f and "chunk.bin" in f for f in found), found
    assert any("binary or large value in detections" in f for f in found), found
