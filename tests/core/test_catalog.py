from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from core.catalog import (
    MoodPrediction,
    assign_moods,
    ensure_catalog,
    import_rows,
    import_sources,
)
from core.config import load_settings
from core.errors import CatalogError
from core.moods import MOODS
from core.store import Store
from core.store.schema import Track
from data import catalog_sources
from data.catalog_sources import (
    ChecksumMismatch,
    SourceError,
    SourceSpec,
    SourceUnavailable,
    fetch,
    parse_source,
    read_catalog,
)
from tests.core.helpers import HITS_HEADER, MOODS_HEADER, hits_line, moods_line, track_id

# -- reading ------------------------------------------------------------------------------------


def test_reads_the_mood_format_and_reports_bad_rows(write_csv) -> None:
    good = moods_line(1, "Sad")
    path = write_csv(
        "moods.csv",
        MOODS_HEADER,
        [
            good,
            moods_line(2, "Energetic"),
            moods_line(3, "Sad").replace(track_id(3), ""),  # line 4: missing id
            moods_line(4, "Calm").replace(",0.5,", ",lots,", 1),  # line 5: not a number
            moods_line(5, "Angry"),  # line 6: unknown mood
            moods_line(6, "Happy").replace(track_id(6), "spotify-id"),  # line 7: bad id
        ],
    )
    result = read_catalog(path, moods=MOODS)
    assert result.format == "moods"
    assert [r.id for r in result.rows] == [track_id(1), track_id(2)]
    first = result.rows[0]
    assert (first.name, first.album, first.artist, first.mood) == (
        "Song 1",
        "Album 1",
        "Artist 1",
        "sad",
    )
    assert (first.duration_ms, first.popularity, first.key, first.time_signature) == (
        200000,
        50,
        5,
        4,
    )
    assert (first.danceability, first.loudness, first.mode) == (0.5, -7.5, None)
    assert [(i.file, i.line) for i in result.issues] == [("moods.csv", n) for n in (4, 5, 6, 7)]
    messages = [i.message for i in result.issues]
    assert messages[0] == "missing id"
    assert "danceability is not a number: 'lots'" in messages[1]
    assert "unknown mood 'Angry'" in messages[2]
    assert "not a 22-character Spotify id" in messages[3]
    assert str(result.issues[0]) == "moods.csv:4: missing id"


def test_reads_the_hit_predictor_format(write_csv) -> None:
    path = write_csv(
        "hits.csv",
        HITS_HEADER,
        [hits_line(1), hits_line(2).replace("spotify:track:", "spotify:album:")],
    )
    result = read_catalog(path, moods=MOODS)
    assert result.format == "hits"
    (row,) = result.rows
    assert (row.id, row.name, row.artist, row.album, row.mood) == (
        track_id(1, "H"), "Hit 1", "Hit Artist 1", None, None,
    )  # fmt: skip
    assert (row.mode, row.duration_ms, row.tempo) == (1, 188493, 108.0)
    assert result.issues[0].line == 3 and "not a spotify:track: URI" in result.issues[0].message


def test_unknown_format_and_missing_file(write_csv, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a known catalog format"):
        read_catalog(write_csv("x.csv", "a,b,c", ["1,2,3"]), moods=MOODS)
    with pytest.raises(SourceUnavailable, match=r"nope\.csv: no such file$"):
        fetch(SourceSpec(str(tmp_path / "nope.csv")), tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # a relative path says where it was looked for
        with pytest.raises(
            SourceUnavailable, match=re.escape(f"no such file (relative to {tmp_path})")
        ):
            fetch(SourceSpec("../nope.csv"), tmp_path)


def test_source_pins() -> None:
    spec = parse_source("https://h/x/data.csv#sha256=" + "AB" * 32)
    assert (spec.location, spec.sha256, spec.name, spec.is_url) == (
        "https://h/x/data.csv", "ab" * 32, "data.csv", True,
    )  # fmt: skip
    assert parse_source(" /d/songs.csv ") == SourceSpec("/d/songs.csv")
    for bad in ("x.csv#sha256=abc", "x.csv#md5=" + "0" * 64, ""):
        with pytest.raises(ValueError):
            parse_source(bad)


# -- importing ----------------------------------------------------------------------------------


async def test_import_is_idempotent_and_keeps_labels(store: Store, write_csv, tmp_path) -> None:
    moods = write_csv(
        "moods.csv", MOODS_HEADER, [moods_line(n, m) for n, m in enumerate(["Sad", "Calm", "Calm"])]
    )
    shared_id = track_id(0)  # also in the unlabelled file, without an album
    hits = write_csv(
        "hits.csv",
        HITS_HEADER,
        [
            hits_line(1),
            hits_line(2),
            hits_line(1),
            hits_line(9).replace(track_id(9, "H"), shared_id),
        ],
    )
    sources = [SourceSpec(str(moods)), SourceSpec(str(hits))]
    first = await import_sources(store, sources, tmp_path / "cache")
    assert [(r.rows, r.inserted, r.updated, r.duplicates) for r in first] == [
        (3, 3, 0, 0),
        (4, 2, 1, 1),
    ]
    counts = await store.catalog_counts()
    assert counts.by_mood == {"calm": 2, "happy": 0, "energetic": 0, "sad": 1}
    assert (counts.unassigned, counts.total) == (2, 5)

    again = await import_sources(store, list(reversed(sources)), tmp_path / "cache")
    assert [(r.inserted, r.updated) for r in again] == [(0, 3), (0, 3)]
    assert await store.catalog_counts() == counts
    async with store.sessions() as session:
        shared = await session.get(Track, shared_id)
        assert shared is not None
        assert (shared.mood, shared.mood_source, shared.album) == ("sad", "label", "Album 0")
        assert shared.mode == 1  # what only the hits file knows is added
        assert shared.source == "moods.csv"


async def test_model_moods_fill_the_gaps_but_never_override_labels(
    store: Store, write_csv, tmp_path
) -> None:
    await import_sources(
        store,
        [
            SourceSpec(str(write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Calm")]))),
            SourceSpec(str(write_csv("h.csv", HITS_HEADER, [hits_line(1), hits_line(2)]))),
        ],
        tmp_path,
    )
    async with store.sessions() as session:
        waiting = await session.scalars(select(Track).where(Track.mood.is_(None)))
        assert sorted(t.id for t in waiting) == [track_id(1, "H"), track_id(2, "H")]
        changed = await assign_moods(
            session,
            [
                MoodPrediction(track_id(1, "H"), "Energetic", 0.8),
                MoodPrediction(track_id(1), "happy", 0.9),  # labelled: kept
            ],
            model_version="music-v1",
        )
        await session.commit()
    assert changed == 1
    counts = await store.catalog_counts()
    assert (counts.by_mood["energetic"], counts.by_mood["calm"], counts.unassigned) == (1, 1, 1)
    async with store.sessions() as session:
        track = await session.get(Track, track_id(1, "H"))
        assert track is not None
        assert (track.mood_source, track.mood_confidence, track.mood_model_version) == (
            "model", 0.8, "music-v1",
        )  # fmt: skip
    # Re-importing the unlabelled file keeps the model's mood.
    await import_sources(store, [SourceSpec(str(tmp_path / "h.csv"))], tmp_path)
    assert (await store.catalog_counts()).by_mood["energetic"] == 1


async def test_import_of_the_published_files(store: Store, music_dir: Path, tmp_path) -> None:
    reports = await import_sources(
        store,
        [
            SourceSpec(
                str(music_dir / "data_moods.csv"),
                "84a74565cfb41385aef2896a8ed6b0b41ec7ff83e7332749db136a1de3133117",
            ),
            SourceSpec(str(music_dir / "dataset-of-10s.csv")),
        ],
        tmp_path,
    )
    moods, hits = reports
    assert (moods.rows, moods.inserted, moods.skipped) == (686, 686, 0)
    assert (hits.rows, hits.duplicates, hits.updated, hits.skipped) == (6398, 20, 13, 0)
    counts = await store.catalog_counts()
    assert counts.by_mood == {"sad": 197, "calm": 195, "energetic": 154, "happy": 140}
    assert counts.unassigned == 6378 - 13
    again = await import_sources(store, [SourceSpec(str(music_dir / "data_moods.csv"))], tmp_path)
    assert (again[0].inserted, again[0].updated) == (0, 686)
    assert await store.catalog_counts() == counts


async def test_ensure_catalog_imports_each_source_once(store: Store, write_csv, tmp_path) -> None:
    path = write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Happy")])
    settings = load_settings(
        env={"MOODLIFT_CATALOG_SOURCES": str(path), "MOODLIFT_PATHS_CACHE_DIR": str(tmp_path)}
    )
    assert [r.inserted for r in await ensure_catalog(settings, store)] == [1]
    assert await ensure_catalog(settings, store) == []


async def test_import_rows_in_the_callers_transaction(store: Store, write_csv) -> None:
    rows = read_catalog(write_csv("m.csv", MOODS_HEADER, [moods_line(1, "Sad")]), moods=MOODS).rows
    async with store.sessions() as session:
        await import_rows(session, rows)
        await session.rollback()
        assert (await session.scalars(select(Track))).all() == []


# -- downloading --------------------------------------------------------------------------------


class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    root.mkdir()
    server = _Server(root)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def _publish(server: _Server, tmp_path: Path, name: str, text: str) -> tuple[str, str]:
    data = text.encode()
    (tmp_path / "www" / name).write_bytes(data)
    return f"{server.url}/{name}", hashlib.sha256(data).hexdigest()


async def test_download_pinned_url_then_use_the_cache(
    store: Store, http_server: _Server, tmp_path: Path
) -> None:
    text = "\r\n".join([MOODS_HEADER, moods_line(1, "Happy"), moods_line(2, "Sad")]) + "\r\n"
    url, digest = _publish(http_server, tmp_path, "data_moods.csv", text)
    cache = tmp_path / "cache"
    reports = await import_sources(store, [parse_source(f"{url}#sha256={digest}")], cache)
    assert (reports[0].source, reports[0].inserted) == ("data_moods.csv", 2)
    assert len(http_server.requests) == 1
    await import_sources(store, [SourceSpec(url, digest)], cache)
    assert len(http_server.requests) == 1  # served from the verified cache
    (cached,) = cache.iterdir()
    assert cached.read_bytes() == text.encode()


def test_download_with_wrong_checksum_is_refused(http_server: _Server, tmp_path: Path) -> None:
    url, digest = _publish(http_server, tmp_path, "songs.csv", "changed upstream\n")
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatch) as error:
        fetch(SourceSpec(url, wrong), cache, progress=False)
    assert error.value.actual == digest
    assert "SHA-256 mismatch" in str(error.value)
    assert list(cache.iterdir()) == []  # nothing half-trusted is left behind


def _unreadable(path: Path) -> str:
    raise OSError(5, "Input/output error", str(path))


def test_a_pinned_url_is_read_from_a_verified_local_copy(
    http_server: _Server, tmp_path: Path
) -> None:
    """A file of the same name whose bytes match the pin is the pinned file: no download (the
    server is never asked); a same-named file with other bytes is not trusted."""
    text = "\r\n".join([MOODS_HEADER, moods_line(1, "Happy")]) + "\r\n"
    url, digest = _publish(http_server, tmp_path, "data_moods.csv", text)
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "data_moods.csv").write_text("an edited copy\n")
    cache = tmp_path / "cache"
    fetched = fetch(SourceSpec(url, digest), cache, progress=False, local_copies=[copies])
    assert fetched.parent == cache and len(http_server.requests) == 1  # downloaded
    (copies / "data_moods.csv").write_bytes(text.encode())
    for cached in cache.iterdir():
        cached.unlink()
    fetched = fetch(SourceSpec(url, digest), cache, progress=False, local_copies=[copies])
    assert fetched == copies / "data_moods.csv" and len(http_server.requests) == 1
    unreachable = SourceSpec("http://127.0.0.1:9/data_moods.csv", digest)
    assert fetch(unreachable, cache, progress=False, local_copies=[copies]) == fetched
    with pytest.MonkeyPatch.context() as patch:  # a copy that cannot be read: download instead
        patch.setattr(catalog_sources, "sha256_of", _unreadable)
        fetched = fetch(SourceSpec(url, digest), cache, progress=False, local_copies=[copies])
    assert fetched.parent == cache and len(http_server.requests) == 2
    with pytest.raises(SourceUnavailable, match="download failed"):
        fetch(SourceSpec(unreachable.location), cache, progress=False, local_copies=[copies])
    elsewhere = tmp_path / "wrong-shared-folder"  # a pinned file not found: where it was looked for
    with pytest.raises(SourceUnavailable, match=f"no copy with its pin in {elsewhere} either$"):
        fetch(unreachable, cache, progress=False, local_copies=[elsewhere])


async def test_download_errors_become_catalog_errors(
    store: Store, http_server: _Server, tmp_path: Path
) -> None:
    with pytest.raises(CatalogError, match="HTTP 404"):
        await import_sources(store, [SourceSpec(f"{http_server.url}/missing.csv")], tmp_path)
    url, _ = _publish(http_server, tmp_path, "songs.csv", "x")
    with pytest.raises(CatalogError, match="SHA-256 mismatch"):
        await import_sources(store, [SourceSpec(url, "1" * 64)], tmp_path)
    with pytest.raises(CatalogError, match="download failed"):
        await import_sources(store, [SourceSpec("http://127.0.0.1:9/none.csv")], tmp_path)


async def test_an_overlapped_url_source_is_not_downloaded_again(
    store: Store, http_server: _Server, write_csv, tmp_path: Path
) -> None:
    """An unlabelled file at a URL whose every track a labelled file has too: no track names
    it, yet the next start does not download it again, so with the network down it does not
    report the catalog incomplete."""
    labelled = write_csv("moods.csv", MOODS_HEADER, [moods_line(1, "Calm")])
    text = HITS_HEADER + "\r\n" + hits_line(1).replace(track_id(1, "H"), track_id(1)) + "\r\n"
    url, _ = _publish(http_server, tmp_path, "hits.csv", text)
    settings = load_settings(
        env={
            "MOODLIFT_CATALOG_SOURCES": f"{labelled},{url}",
            "MOODLIFT_PATHS_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
    assert [(r.source, r.updated) for r in await ensure_catalog(settings, store)] == [
        ("moods.csv", 0),
        ("hits.csv", 1),
    ]
    assert len(http_server.requests) == 1
    async with store.sessions() as session:
        assert set(await session.scalars(select(Track.source))) == {"moods.csv"}

    http_server.httpd.shutdown()  # the network is down: refused, at once
    http_server.httpd.server_close()
    assert await ensure_catalog(settings, store) == []  # no CatalogError
    assert len(http_server.requests) == 1
