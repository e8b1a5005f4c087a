"""``moodlift catalog art``: resolves album art ahead of time against a local fake Spotify."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from core.store import Store
from tests.core.helpers import HITS_HEADER, MOODS_HEADER, hits_line, moods_line, track_id
from tests.fakes.spotify import FakeSpotify, as_json, fake_spotify


@pytest.fixture
def fake() -> Iterator[FakeSpotify]:
    with fake_spotify() as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeSpotify) -> Path:
    """A private data directory, Spotify at the fake, no credentials, no user config."""
    monkeypatch.delenv("MOODLIFT_CONFIG", raising=False)
    for key in ("CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"MOODLIFT_SPOTIFY_{key}", raising=False)
    monkeypatch.setenv("MOODLIFT_PATHS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOODLIFT_PATHS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MOODLIFT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("MOODLIFT_SPOTIFY_OEMBED_URL", fake.oembed_url)
    monkeypatch.setenv("MOODLIFT_SPOTIFY_TIMEOUT", "1")
    return tmp_path


def art_of(env: Path) -> dict[str, tuple[str | None, bool]]:
    """track id -> (art URL, checked?) straight from the database."""

    async def read() -> dict[str, tuple[str | None, bool]]:
        async with Store(f"sqlite+aiosqlite:///{env / 'data' / 'moodlift.sqlite3'}") as store:
            ids = [track_id(n) for n in range(3)] + [track_id(0, "H")]
            tracks = [await store.get_track(i) for i in ids]
            return {t.id: (t.art_url, t.art_checked_at is not None) for t in tracks if t}

    return asyncio.run(read())


def test_catalog_art_servable_first_paced_resumable(
    env: Path, fake: FakeSpotify, capsys: pytest.CaptureFixture[str]
) -> None:
    moods = env / "moods.csv"
    moods.write_text("\r\n".join([MOODS_HEADER, *(moods_line(n, "Happy") for n in range(3))]))
    hits = env / "hits.csv"  # a track with no mood yet: checked last
    hits.write_text("\r\n".join([HITS_HEADER, hits_line(0)]))
    assert main(["catalog", "import", str(hits), str(moods)]) == 0
    capsys.readouterr()

    a, b, c, h = track_id(0), track_id(1), track_id(2), track_id(0, "H")
    url_a = fake.oembed_found(a, "a")
    # b: oEmbed knows nothing (404). c: a 429 first, asking for 1 s, then the art.
    url_c = fake.picture("c")
    fake.oembed[c] = [
        as_json({"error": "slow down"}, 429, headers={"Retry-After": "1"}),
        as_json({"thumbnail_url": url_c}),
    ]
    started = time.monotonic()
    assert main(["catalog", "art", "--limit", "3", "--rate", "10"]) == 0
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert "3 checked (2 found, 1 without art), 0 unanswered; 1 tracks left" in out
    assert elapsed >= 1.0  # Retry-After honoured
    assert [key for _, route, key in fake.requests if route == "oembed"] == [a, b, c, c]
    gaps = [t2 - t1 for t1, t2 in zip(fake.times, fake.times[1:], strict=False)]
    # At most 10 requests a second. The pacer spaces request *starts* 0.1 s apart; arrival at
    # the fake carries scheduling jitter, so check the average and allow jitter on each gap.
    assert sum(gaps) / len(gaps) >= 0.09
    assert min(gaps) >= 0.05
    assert fake.count("img") == 0  # ahead of time only the URL is needed
    assert art_of(env) == {a: (url_a, True), b: (None, True), c: (url_c, True), h: (None, False)}

    # Resumable: the next run only asks about what is left.
    assert main(["catalog", "art"]) == 0
    assert "1 checked (0 found, 1 without art), 0 unanswered; 0 tracks left" in (
        capsys.readouterr().out
    )
    assert [key for _, route, key in fake.requests if route == "oembed"] == [a, b, c, c, h]


def test_catalog_art_stops_when_told_to_wait_too_long(
    env: Path, fake: FakeSpotify, capsys: pytest.CaptureFixture[str]
) -> None:
    moods = env / "moods.csv"
    moods.write_text("\r\n".join([MOODS_HEADER, moods_line(0, "Sad")]))
    assert main(["catalog", "import", str(moods)]) == 0
    fake.oembed[track_id(0)] = as_json({}, 429, headers={"Retry-After": "86400"})
    assert main(["catalog", "art"]) == 1
    captured = capsys.readouterr()
    assert "0 checked" in captured.out and "1 tracks left" in captured.out
    assert "stopped early" in captured.err and "1440 min" in captured.err


def test_catalog_art_refuses_a_bad_limit(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["catalog", "art", "--limit", "0"])
    assert "0 is not > 0" in capsys.readouterr().err


def test_catalog_art_with_spotify_unreachable_stops_at_once(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No network (here: a port nobody listens on): the run ends once the breaker opens,
    without waiting it out track after track, and says so."""
    moods = env / "moods.csv"
    moods.write_text("\r\n".join([MOODS_HEADER, *(moods_line(n, "Sad") for n in range(3))]))
    assert main(["catalog", "import", str(moods)]) == 0
    monkeypatch.setenv("MOODLIFT_SPOTIFY_OEMBED_URL", "http://127.0.0.1:9/oembed")
    started = time.monotonic()
    assert main(["catalog", "art", "--rate", "100"]) == 1
    assert time.monotonic() - started < 30  # it waited ~2 minutes a track before
    captured = capsys.readouterr()
    assert "0 checked" in captured.out and "3 tracks left" in captured.out
    assert "stopped early: Spotify does not answer" in captured.err


def test_catalog_art_goes_on_without_waiting_for_a_dead_upstream(
    env: Path,
    fake: FakeSpotify,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Web API keeps failing (500) while oEmbed answers: tracks oEmbed has art for are
    checked, the others are left for the next run, and the run does not wait out the dead
    upstream's breaker track after track (it never ended before)."""
    for key, value in (("CLIENT_ID", "id"), ("CLIENT_SECRET", "secret")):
        monkeypatch.setenv(f"MOODLIFT_SPOTIFY_{key}", value)
    monkeypatch.setenv("MOODLIFT_SPOTIFY_API_URL", fake.api_url)
    monkeypatch.setenv("MOODLIFT_SPOTIFY_TOKEN_URL", fake.token_url)
    moods = env / "moods.csv"
    moods.write_text("\r\n".join([MOODS_HEADER, *(moods_line(n, "Sad") for n in range(8))]))
    assert main(["catalog", "import", str(moods)]) == 0
    capsys.readouterr()
    found = [track_id(n) for n in (1, 6)]
    for key in found:
        fake.oembed_found(key, key)
    for n in range(8):  # oEmbed knows only those two; the Web API answers nothing
        fake.tracks[track_id(n)] = as_json({"error": {"status": 500}}, 500)
    started = time.monotonic()
    main(["catalog", "art", "--rate", "100"])
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert "2 checked (2 found, 0 without art), 6 unanswered; 6 tracks left" in out
    assert {key for key, (url, checked) in art_of(env).items() if checked} <= set(found)
