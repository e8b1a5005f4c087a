"""Which configured sources the start-up import still has to import: those without a row in
``catalog_imports``, whatever their tracks' ``source`` says. Real CSV files, a fresh database
per test, on each backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.catalog import ensure_catalog, import_rows, import_sources, imported_sources
from core.errors import CatalogError
from core.moods import MOODS
from core.store import Store, upgrade
from core.store.schema import CatalogImport, Track
from data.catalog_sources import SourceSpec, read_catalog
from tests.core.helpers import (
    HITS_HEADER,
    MOODS_HEADER,
    catalog_settings,
    hits_line,
    moods_line,
    track_id,
)


async def _moods(store: Store) -> dict[str, tuple[str | None, str | None, str]]:
    async with store.sessions() as session:
        rows = await session.execute(select(Track.id, Track.mood, Track.mood_source, Track.source))
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def _record(store: Store, source: str) -> CatalogImport | None:
    async with store.sessions() as session:
        return await session.get(CatalogImport, source)


async def test_a_labelled_file_inside_a_later_one_is_not_imported_again(
    store: Store, write_csv, tmp_path: Path
) -> None:
    """A ⊆ B, both labelled: after the first start every track names B. The old rule took A
    for missing and re-imported it on the next start, putting A's older labels back."""
    old = write_csv("a.csv", MOODS_HEADER, [moods_line(1, "Calm"), moods_line(2, "Calm")])
    new = write_csv(
        "b.csv", MOODS_HEADER, [moods_line(1, "Sad"), moods_line(2, "Happy"), moods_line(3, "Sad")]
    )
    settings = catalog_settings(tmp_path, old, new)

    reports = await ensure_catalog(settings, store)
    assert [(r.source, r.inserted, r.updated) for r in reports] == [
        ("a.csv", 2, 0),
        ("b.csv", 1, 2),
    ]
    after_first = await _moods(store)
    assert {source for _, _, source in after_first.values()} == {"b.csv"}  # A names no track
    assert after_first[track_id(1)][:2] == ("sad", "label")

    assert set(await imported_sources(store, ["a.csv", "b.csv"])) == {"a.csv", "b.csv"}
    assert await ensure_catalog(settings, store) == []
    assert await _moods(store) == after_first  # B's labels stay


async def test_an_unlabelled_source_all_in_another_is_not_read_again(
    store: Store, write_csv, tmp_path: Path
) -> None:
    """Every track of the unlabelled file is in the labelled one too, so none names it; it is
    imported once, then never read again: gone (as if its download failed), nothing fails."""
    labelled = write_csv("moods.csv", MOODS_HEADER, [moods_line(1, "Calm"), moods_line(2, "Sad")])
    overlapped = write_csv(
        "hits.csv",
        HITS_HEADER,
        [hits_line(n).replace(track_id(n, "H"), track_id(n)) for n in (1, 2)],
    )
    settings = catalog_settings(tmp_path, labelled, overlapped)

    reports = await ensure_catalog(settings, store)
    assert [(r.source, r.inserted, r.updated) for r in reports] == [
        ("moods.csv", 2, 0),
        ("hits.csv", 0, 2),
    ]
    assert {source for _, _, source in (await _moods(store)).values()} == {"moods.csv"}

    overlapped.unlink()
    assert await ensure_catalog(settings, store) == []  # not read: no "no such file"


async def test_a_file_without_a_good_row_is_imported_once(
    store: Store, write_csv, tmp_path: Path
) -> None:
    """No track can name it; it was imported (and its bad rows reported) all the same."""
    bad = write_csv("bad.csv", MOODS_HEADER, [moods_line(1, "Angry")])
    settings = catalog_settings(tmp_path, bad)
    (report,) = await ensure_catalog(settings, store)
    assert (report.rows, report.skipped) == (0, 1)
    record = await _record(store, "bad.csv")
    assert record is not None
    assert (record.rows_read, record.inserted, record.updated, record.skipped) == (0, 0, 0, 1)
    assert await ensure_catalog(settings, store) == []


async def test_the_record_holds_the_files_checksum_and_counts_and_a_reimport_replaces_it(
    store: Store, write_csv, tmp_path: Path
) -> None:
    path = write_csv(
        "m.csv", MOODS_HEADER, [moods_line(1, "Happy"), moods_line(1, "Happy"), moods_line(2, "")]
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    first = await _record(store, "m.csv")
    assert first is not None
    assert (first.sha256, first.rows_read, first.inserted, first.updated, first.skipped) == (
        digest, 2, 1, 0, 1,
    )  # fmt: skip
    assert first.imported_at.tzinfo is not None
    tracks = await _moods(store)

    await import_sources(store, [SourceSpec(str(path), digest)], tmp_path)  # pinned this time
    again = await _record(store, "m.csv")
    assert again is not None
    assert (again.sha256, again.rows_read, again.inserted, again.updated) == (digest, 2, 0, 1)
    assert again.imported_at >= first.imported_at
    assert await _moods(store) == tracks  # idempotent
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CatalogImport)) == 1


async def test_an_explicit_import_counts_at_the_next_start(
    store: Store, write_csv, tmp_path: Path
) -> None:
    """What ``moodlift catalog import`` imported (through :func:`import_sources`) is not
    imported again by the next start."""
    path = write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Happy")])
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    path.unlink()
    assert await ensure_catalog(catalog_settings(tmp_path, path), store) == []


async def test_a_failed_import_leaves_no_record(store: Store, write_csv, tmp_path: Path) -> None:
    path = write_csv("notes.csv", "title,notes", ["a,b"])  # not a catalog file
    with pytest.raises(CatalogError, match="not a known catalog format"):
        await ensure_catalog(catalog_settings(tmp_path, path), store)
    assert set(await imported_sources(store, ["notes.csv"])) == set()


async def test_a_database_from_before_the_table_keeps_what_its_tracks_say(
    db_url: str, write_csv, tmp_path: Path
) -> None:
    """Migration 0003 records each source a track names (the old rule): those are not imported
    again; one no track names is imported at the next start."""
    labelled = write_csv("moods.csv", MOODS_HEADER, [moods_line(1, "Calm"), moods_line(2, "Sad")])
    hits = write_csv("hits.csv", HITS_HEADER, [hits_line(1)])
    assert await upgrade(db_url, "0002") == "0002"
    old = await Store.open(db_url, upgrade=False)
    try:
        async with old.sessions() as session:  # what the code before the table did
            await import_rows(session, read_catalog(labelled, moods=MOODS).rows)
            await session.commit()
    finally:
        await old.close()

    store = await Store.open(db_url)
    try:
        assert set(await imported_sources(store, ["moods.csv", "hits.csv"])) == {"moods.csv"}
        carried = await _record(store, "moods.csv")
        assert carried is not None
        assert (carried.sha256, carried.rows_read) == (None, None)  # not known
        assert carried.imported_at.tzinfo is not None

        labelled.unlink()  # not read again
        reports = await ensure_catalog(catalog_settings(tmp_path, labelled, hits), store)
        assert [(r.source, r.inserted) for r in reports] == [("hits.csv", 1)]
        assert set(await imported_sources(store, ["moods.csv", "hits.csv"])) == {
            "moods.csv",
            "hits.csv",
        }
    finally:
        await store.close()


async def test_a_new_pin_imports_the_new_version_of_its_file(
    store: Store, write_csv, tmp_path: Path
) -> None:
    """A pinned source is read once per pin: the same pin never again (the file may change
    or go), a new pin (a new release of the file) at the next start, idempotently."""
    path = write_csv("moods.csv", MOODS_HEADER, [moods_line(1, "Calm")])

    def pinned() -> str:
        return f"{path}#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"

    first = pinned()
    reports = await ensure_catalog(catalog_settings(tmp_path, first), store)
    assert [(r.source, r.inserted) for r in reports] == [("moods.csv", 1)]

    write_csv("moods.csv", MOODS_HEADER, [moods_line(1, "Sad"), moods_line(2, "Happy")])
    assert await ensure_catalog(catalog_settings(tmp_path, first), store) == []  # not re-read
    assert (await _moods(store))[track_id(1)][:2] == ("calm", "label")

    second = pinned()
    reports = await ensure_catalog(catalog_settings(tmp_path, second), store)
    assert [(r.source, r.inserted, r.updated) for r in reports] == [("moods.csv", 1, 1)]
    moods = await _moods(store)
    assert (moods[track_id(1)][:2], moods[track_id(2)][:2]) == (
        ("sad", "label"),
        ("happy", "label"),
    )
    record = await _record(store, "moods.csv")
    assert record is not None and f"#sha256={record.sha256}" in second
    assert await ensure_catalog(catalog_settings(tmp_path, second), store) == []
