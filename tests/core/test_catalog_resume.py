"""A start-up import that failed half-way is finished by the next start: real CSV files, the
committed song-mood model, a fresh database per test."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.runtime import serve
from core.catalog import ensure_catalog, imported_sources
from core.config import Settings
from core.errors import CatalogError
from core.store import Store
from tests.core.helpers import (
    HITS_HEADER,
    MOODS_HEADER,
    catalog_settings,
    hits_line,
    moods_line,
    track_id,
)

LABELLED = [moods_line(1, "Calm"), moods_line(2, "Sad")]
# Three new tracks, and one the labelled file has (its label must survive).
UNLABELLED = [
    hits_line(1),
    hits_line(2),
    hits_line(3),
    hits_line(9).replace(track_id(9, "H"), track_id(1)),
]


async def test_the_next_start_imports_the_source_a_failed_start_missed(
    store: Store, write_csv, tmp_path: Path
) -> None:
    moods = write_csv("moods.csv", MOODS_HEADER, LABELLED)
    hits = tmp_path / "hits.csv"  # not there yet: as if its download had failed
    settings = catalog_settings(tmp_path, moods, hits)

    with pytest.raises(CatalogError, match=r"hits\.csv: no such file"):
        await ensure_catalog(settings, store)
    assert set(await imported_sources(store, ["moods.csv", "hits.csv"])) == {"moods.csv"}
    assert (await store.catalog_counts()).total == 2

    write_csv("hits.csv", HITS_HEADER, UNLABELLED)
    reports = await ensure_catalog(settings, store)  # the catalog is not empty: still imports
    assert [(r.source, r.inserted, r.updated) for r in reports] == [("hits.csv", 3, 1)]
    counts = await store.catalog_counts()
    assert (counts.total, counts.unassigned) == (5, 0)  # the new tracks got the model's moods
    assert sum(counts.labelled.values()) == 2
    assert sum(counts.modelled.values()) + sum(counts.held_back.values()) == 3

    assert await ensure_catalog(settings, store) == []  # nothing missing: nothing imported
    assert await store.catalog_counts() == counts


async def test_a_failed_source_does_not_stop_the_next_one(
    store: Store, write_csv, tmp_path: Path
) -> None:
    hits = write_csv("hits.csv", HITS_HEADER, UNLABELLED[:3])
    settings = catalog_settings(tmp_path, tmp_path / "moods.csv", hits)  # the first one is missing

    with pytest.raises(CatalogError, match=r"moods\.csv: no such file"):
        await ensure_catalog(settings, store)
    counts = await store.catalog_counts()
    assert (counts.total, counts.unassigned) == (3, 0)  # imported, and classified

    write_csv("moods.csv", MOODS_HEADER, LABELLED)
    reports = await ensure_catalog(settings, store)
    assert [(r.source, r.inserted) for r in reports] == [("moods.csv", 2)]
    assert sum((await store.catalog_counts()).labelled.values()) == 2


async def _start_once(settings: Settings) -> None:
    """``moodlift run`` with no platform: start (importing what is missing), then stop."""
    stop = asyncio.Event()
    await serve(settings, [], stop_event=stop, ready=lambda _: stop.set())


async def test_run_after_a_half_failed_start_imports_the_rest(
    write_csv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    moods = write_csv("moods.csv", MOODS_HEADER, LABELLED)
    hits = tmp_path / "hits.csv"
    settings = catalog_settings(tmp_path, moods, hits)

    with caplog.at_level(logging.WARNING, logger="bot.runtime"):
        await _start_once(settings)
    assert "song catalog incomplete, 2 tracks so far" in caplog.text
    assert "restart when the network is back" in caplog.text

    write_csv("hits.csv", HITS_HEADER, UNLABELLED)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.runtime"):
        await _start_once(settings)
    assert "song catalog" not in caplog.text
    store = await Store.open(settings)
    try:
        counts = await store.catalog_counts()
    finally:
        await store.close()
    assert (counts.total, counts.unassigned) == (5, 0)
