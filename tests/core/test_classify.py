"""Classifying the catalog with the committed song-mood model: real CSVs, a real SQLite file."""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from core.catalog import (
    MoodPrediction,
    assign_moods,
    classify_catalog,
    ensure_catalog,
    import_sources,
)
from core.config import load_settings
from core.errors import CatalogEmpty
from core.store import Store
from core.store.schema import Track
from data.catalog_sources import SourceSpec
from models.music_mood import MusicMoodModel
from tests.core.helpers import HITS_HEADER, MOODS_HEADER, hits_line, moods_line, track_id

THRESHOLD = 0.6


@pytest.fixture(scope="session")
def music_model() -> MusicMoodModel:
    """The committed artifact, through the configured default path (as the app loads it)."""
    return MusicMoodModel.load(load_settings(env={}).models.music_path)


@pytest.fixture
async def strict_store(db_url: str) -> AsyncIterator[Store]:
    """A store that holds back model moods below :data:`THRESHOLD`."""
    opened = await Store.open(db_url)
    opened.min_mood_confidence = THRESHOLD
    try:
        yield opened
    finally:
        await opened.close()


def subset_of_hits(music_dir: Path, target: Path, rows: int = 150) -> Path:
    """The first ``rows`` tracks of the real unlabelled file, plus those also labelled."""
    labelled = {r["id"] for r in csv.DictReader((music_dir / "data_moods.csv").open())}
    with (music_dir / "dataset-of-10s.csv").open(newline="") as source:
        reader = csv.reader(source)
        header = next(reader)
        uri = header.index("uri")
        kept = [
            line
            for n, line in enumerate(reader)
            if n < rows or line[uri].rsplit(":", 1)[-1] in labelled
        ]
    with target.open("w", newline="") as out:
        csv.writer(out).writerows([header, *kept])
    return target


async def _sources(store: Store, *paths: Path, cache: Path) -> None:
    await import_sources(store, [SourceSpec(str(p)) for p in paths], cache)


async def _moods(store: Store) -> dict[str, tuple[str | None, str | None, float | None]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(Track.id, Track.mood, Track.mood_source, Track.mood_confidence)
        )
        return {r.id: (r.mood, r.mood_source, r.mood_confidence) for r in rows}


async def test_classify_the_whole_catalog_idempotently(
    strict_store: Store, music_dir: Path, music_model: MusicMoodModel, tmp_path: Path
) -> None:
    store = strict_store
    labelled_file = music_dir / "data_moods.csv"
    await _sources(store, labelled_file, music_dir / "dataset-of-10s.csv", cache=tmp_path)
    labels = {r["id"]: r["mood"].lower() for r in csv.DictReader(labelled_file.open())}
    before = await _moods(store)

    first = await classify_catalog(store, music_model)
    assert (first.model_version, first.considered, first.assigned) == (
        music_model.version, 6365, 6365,
    )  # fmt: skip
    after = await _moods(store)
    assert len(after) == 7051
    for track, (mood, source, confidence) in after.items():
        if track in labels:  # the 686 labelled ones, 13 of them in both files
            assert (mood, source, confidence) == (labels[track], "label", None)
            assert before[track] == after[track]
        else:
            assert mood is not None and source == "model"
            assert confidence is not None and 0.25 <= confidence <= 1.0

    counts = await store.catalog_counts()
    low = sum(1 for m, s, c in after.values() if s == "model" and c is not None and c < THRESHOLD)
    assert 0 < low < 6365 // 2
    assert sum(counts.held_back.values()) == low
    assert sum(counts.labelled.values()) == 686
    assert sum(counts.modelled.values()) == 6365 - low
    assert (counts.unassigned, counts.total, counts.servable) == (0, 7051, 7051 - low)
    assert counts.model_versions == {music_model.version: 6365}
    assert all(counts.by_mood[m] > counts.labelled[m] for m in counts.by_mood)

    again = await classify_catalog(store, music_model)
    assert (again.changed, again.unchanged, again.considered) == (0, 6365, 6365)
    assert await _moods(store) == after
    assert await store.catalog_counts() == counts


async def test_a_model_change_reassigns_only_model_moods(
    store: Store, music_dir: Path, music_model: MusicMoodModel, tmp_path: Path
) -> None:
    await _sources(
        store,
        music_dir / "data_moods.csv",
        subset_of_hits(music_dir, tmp_path / "hits.csv"),
        cache=tmp_path,
    )
    first = await classify_catalog(store, music_model)
    assert first.assigned == first.considered == 150
    some = (await _moods(store)).items()
    flipped = next(t for t, (m, s, _) in some if s == "model" and m != "calm")
    async with store.sessions() as session:  # as if an older model had said otherwise
        await session.execute(update(Track).where(Track.id == flipped).values(mood="calm"))
        await session.commit()
    newer = dataclasses.replace(music_model, version="soft_vote-newer")
    report = await classify_catalog(store, newer)
    assert (report.assigned, report.mood_changed, report.rescored) == (0, 1, 149)
    assert (await store.catalog_counts()).model_versions == {"soft_vote-newer": 150}
    async with store.sessions() as session:
        labelled = await session.scalar(
            select(func.count()).where(
                Track.mood_source == "label", Track.mood_model_version.is_(None)
            )
        )
    assert labelled == 686
    assert (await classify_catalog(store, newer)).changed == 0


async def test_low_confidence_moods_are_held_back_from_picks(
    strict_store: Store, write_csv, tmp_path: Path
) -> None:
    store = strict_store
    await _sources(
        store,
        write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Calm")]),
        write_csv("h.csv", HITS_HEADER, [hits_line(n) for n in (1, 2, 3)]),
        cache=tmp_path,
    )
    sure, doubtful, sad = track_id(1, "H"), track_id(2, "H"), track_id(3, "H")
    async with store.sessions() as session:
        predictions = [
            MoodPrediction(sure, "calm", 0.9),
            MoodPrediction(doubtful, "calm", THRESHOLD - 0.01),
            MoodPrediction(sad, "sad", 0.3),
        ]
        await assign_moods(session, predictions, "test-v1")
        await session.commit()

    counts = await store.catalog_counts()
    assert (counts.by_mood["calm"], counts.labelled["calm"], counts.modelled["calm"]) == (2, 1, 1)
    assert (counts.held_back["calm"], counts.held_back["sad"], counts.by_mood["sad"]) == (1, 1, 0)
    assert (counts.servable, counts.total, counts.min_confidence) == (2, 4, THRESHOLD)

    user = await store.get_or_create_user("cli", "ann")
    given = [(await store.pick_and_deliver(user.id, "calm")).track.id for _ in range(6)]
    assert set(given) == {track_id(1), sure}  # two rounds of the two servable ones
    with pytest.raises(CatalogEmpty):
        await store.pick_and_deliver(user.id, "sad")

    store.min_mood_confidence = 0.0  # the threshold off: every mood is served
    assert (await store.pick_and_deliver(user.id, "sad")).track.id == sad
    assert (await store.catalog_counts()).servable == 4


async def test_ensure_catalog_classifies_a_fresh_install(
    store: Store, music_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hits = subset_of_hits(music_dir, tmp_path / "hits.csv")
    env = {
        "MOODLIFT_CATALOG_SOURCES": f"{music_dir / 'data_moods.csv'},{hits}",
        "MOODLIFT_PATHS_CACHE_DIR": str(tmp_path / "cache"),
    }
    missing = load_settings(env={**env, "MOODLIFT_MODELS_MUSIC_PATH": str(tmp_path / "no.joblib")})
    with caplog.at_level(logging.WARNING, logger="core.catalog"):
        assert len(await ensure_catalog(missing, store)) == 2
    assert "150 tracks stay without a mood" in caplog.text  # no model: labels still served
    assert (await store.catalog_counts()).unassigned == 150

    await ensure_catalog(load_settings(env=env), store)  # catalog there: only classifies
    counts = await store.catalog_counts()
    assert (counts.unassigned, counts.total) == (0, 836)
    assert sum(counts.modelled.values()) + sum(counts.held_back.values()) == 150
