"""Album art against a local fake Spotify (oEmbed, token, Web API, pictures) on 127.0.0.1.

spotipy and httpx really talk HTTP to the fake; the store is a real SQLite file with a real
catalog. Every case ends with a picture for the card: remote art or the drawn card.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import update

from core import recommend
from core.artwork import ArtResolver, Guard, NoArt, Pacer
from core.artwork.guard import retry_after_seconds
from core.artwork.images import check_image
from core.artwork.outcomes import Blocked, RateLimited
from core.cards import SIZE, draw_card
from core.catalog import import_sources
from core.config import Secret, Settings, SpotifySettings
from core.replies import Picture, TrackCard
from core.service import MoodLifter
from core.store import Store
from core.store.schema import Track, utcnow
from data.catalog_sources import SourceSpec
from tests.core.helpers import MOODS_HEADER, moods_line, track_id
from tests.fakes.spotify import (
    CLIENT_ID,
    CLIENT_SECRET,
    Canned,
    FakeSpotify,
    as_json,
    fake_spotify,
    jpeg,
)

DEADLINE = 0.6
A, B, C = track_id(0), track_id(1), track_id(2)


@pytest.fixture
def fake() -> Iterator[FakeSpotify]:
    with fake_spotify() as server:
        yield server


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests time the resolver against its deadline (the store's art cache
    itself is tested on both backends in test_store.py)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'moodlift.sqlite3'}"


@pytest.fixture
async def catalog(store: Store, write_csv, tmp_path: Path) -> Store:
    lines = [moods_line(n, mood) for n, mood in enumerate(["Happy", "Sad", "Calm"])]
    path = write_csv("moods.csv", MOODS_HEADER, lines)
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    return store


def settings(fake: FakeSpotify, *, keys: bool = False, timeout: float = 0.4) -> SpotifySettings:
    return SpotifySettings(
        client_id=Secret(CLIENT_ID) if keys else None,
        client_secret=Secret(CLIENT_SECRET) if keys else None,
        api_url=fake.api_url,
        token_url=fake.token_url,
        oembed_url=fake.oembed_url,
        timeout=timeout,
    )


@pytest.fixture
async def resolver(catalog: Store, fake: FakeSpotify) -> AsyncIterator[ArtResolver]:
    built = ArtResolver.from_settings(settings(fake), catalog, deadline=DEADLINE)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
async def keyed(catalog: Store, fake: FakeSpotify) -> AsyncIterator[ArtResolver]:
    """A resolver with client credentials: oEmbed, then the Web API through spotipy."""
    built = ArtResolver.from_settings(settings(fake, keys=True), catalog, deadline=DEADLINE)
    try:
        yield built
    finally:
        await built.close()


def card(track: str = A, title: str = "Song 0", mood: str = "happy") -> TrackCard:
    return TrackCard(
        track, title, "Artist 0", "Album 0", mood, f"https://open.spotify.com/track/{track}"
    )


def assert_drawn(picture: Picture) -> None:
    assert picture.kind == "jpeg"
    with Image.open(io.BytesIO(picture.data)) as image:
        assert (image.format, image.size) == ("JPEG", (SIZE, SIZE))


# -- the drawn card ----------------------------------------------------------------------------


def test_drawn_card_is_a_crisp_picture_with_its_text() -> None:
    data = draw_card("Here Comes the Sun", "The Beatles", "happy")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (640, 640)
    assert max(ImageStat.Stat(image).stddev) > 20  # not blank: gradient, record, type
    assert len(data) < 200_000

    other = Image.open(io.BytesIO(draw_card("Yesterday", "The Beatles", "happy"))).convert("RGB")
    changed = ImageChops.difference(image, other).getbbox()
    assert changed is not None  # the title is drawn...
    left, top, _, _ = changed
    assert top >= 300 and left < 200  # ...in the text block, not elsewhere
    assert draw_card("Here Comes the Sun", "The Beatles", "happy") == data  # deterministic


def test_drawn_card_fits_long_and_unusual_titles() -> None:
    long = "A Very Long Title That Goes On And On " * 6
    image = Image.open(io.BytesIO(draw_card(long, "Ünïcødé Ärtist 東京", "sad"))).convert("RGB")
    assert image.size == (640, 640)
    # Nothing is drawn in the right margin of the text block: long titles wrap, not overflow.
    empty = Image.open(io.BytesIO(draw_card("", "", "sad"))).convert("RGB")
    margin = (640 - 40, 330, 640, 640)
    assert ImageChops.difference(image.crop(margin), empty.crop(margin)).getbbox() is None
    assert ImageChops.difference(image, empty).getbbox() is not None


# -- success and the cache ---------------------------------------------------------------------


async def test_oembed_art_is_downloaded_cached_and_not_asked_again(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    art_url = fake.oembed_found(A, "a", title="Song 0")
    art = await resolver.card_art(card())
    assert (art.source, art.url) == ("oembed", art_url)
    assert art.picture == Picture(fake.images["a"].body, "jpeg")
    track = await catalog.get_track(A)
    assert track is not None and track.art_url == art_url and track.art_checked_at is not None
    seen = fake.count()
    assert seen == 2  # oEmbed + the picture

    again = await resolver.card_art(card())
    assert again.picture == art.picture and fake.count() == seen  # no HTTP call at all

    # A fresh process: the URL comes from the store, only the picture is fetched again.
    fresh = ArtResolver.from_settings(settings(fake), catalog, deadline=DEADLINE)
    try:
        assert (await fresh.card_art(card())).source == "catalog"
    finally:
        await fresh.close()
    assert fake.count("oembed") == 1 and fake.count("img") == 2


async def test_web_api_through_spotipy_when_oembed_has_nothing(
    keyed: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    big = fake.track_found(B, "album-b")  # oEmbed answers 404 for B
    art = await keyed.card_art(card(B))
    assert (art.source, art.url) == ("webapi", big)  # the 640 px image of the three
    with Image.open(io.BytesIO(art.picture.data)) as image:
        assert image.size == (640, 640)
    assert [r[1] for r in fake.requests] == ["oembed", "token", "tracks", "img"]
    found = await keyed.lookup(B)
    assert (found.title, found.artist, found.album) == ("A Song", "An Artist", "An Album")
    assert fake.count("token") == 1  # the token is reused


async def test_nowhere_any_art_is_cached_as_none_then_retried_after_a_while(
    keyed: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    art = await keyed.card_art(card(C, "Song 2", "calm"))  # 404 from oEmbed and the Web API
    assert art.source == "drawn" and art.url is None
    assert_drawn(art.picture)
    track = await catalog.get_track(C)
    assert track is not None and track.art_url is None and track.art_checked_at is not None
    seen = fake.count()
    await keyed.card_art(card(C, "Song 2", "calm"))
    assert fake.count() == seen  # "no art" is remembered

    async with catalog.sessions() as session:
        await session.execute(
            update(Track).where(Track.id == C).values(art_checked_at=utcnow() - timedelta(days=8))
        )
        await session.commit()
    fake.oembed_found(C, "c")
    assert (await keyed.card_art(card(C))).source == "oembed"


# -- failures: the card still arrives ----------------------------------------------------------


async def test_a_picked_card_carries_the_catalogs_art_state_so_it_is_not_read_again(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    user = await catalog.get_or_create_user("telegram", "1")
    picked = recommend.card(await catalog.pick_and_deliver(user.id, "calm"), "calm")
    assert picked.track_id == C and picked.art_from_catalog
    assert (picked.art_url, picked.art_checked_at) == (None, None)  # never looked up yet
    fake.oembed_found(C, "c")
    assert (await resolver.card_art(picked)).source == "oembed"

    # The card speaks for the catalog as of its pick: its "no art a day ago" stands even
    # though the store has a URL by now, which a card not from the catalog reads.
    day_ago = utcnow() - timedelta(days=1)
    with pytest.raises(NoArt):
        await resolver.find(C, None, checked_at=day_ago, from_catalog=True)
    assert (await resolver.find(C)).source == "catalog"


async def test_429_honours_retry_after_without_holding_the_reply(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    fake.oembed[A] = as_json({"error": "slow down"}, 429, headers={"Retry-After": "120"})
    started = time.monotonic()
    art = await resolver.card_art(card())
    assert art.source == "drawn" and time.monotonic() - started < DEADLINE
    assert_drawn(art.picture)
    guard = resolver.sources[0].guard
    assert 110 < guard.wait_time() <= 120 and guard.why == "cooling down"
    track = await catalog.get_track(A)
    assert track is not None and track.art_checked_at is None  # "not now" is never cached

    fake.oembed_found(A, "a")
    seen = fake.count()
    assert (await resolver.card_art(card())).source == "drawn"
    assert fake.count() == seen  # cooling down: Spotify is not asked at all
    with pytest.raises(Blocked):
        await resolver.lookup(A)


async def test_429_from_the_web_api_reaches_us_through_spotipy(
    keyed: ArtResolver, fake: FakeSpotify
) -> None:
    fake.tracks[B] = as_json({"error": {"status": 429}}, 429, headers={"Retry-After": "30"})
    with pytest.raises(RateLimited):
        await keyed.lookup(B)
    assert fake.count("tracks") == 1  # spotipy did not retry (and did not sleep)
    assert 25 < keyed.sources[1].guard.wait_time() <= 30


@pytest.mark.parametrize(
    "answer",
    [
        Canned(500, b"oops", "text/plain"),
        Canned(200, b"{not json", "application/json"),
        as_json(["a", "list"]),
        Canned(503, b"", "text/plain", headers={"Retry-After": "1"}),
    ],
    ids=["500", "malformed", "not-an-object", "503"],
)
async def test_server_errors_give_the_drawn_card_and_open_the_breaker(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify, answer: Canned
) -> None:
    fake.oembed[A] = answer
    guard = resolver.sources[0].guard
    for _ in range(guard.threshold):
        art = await resolver.card_art(card())
        assert art.source == "drawn"
    assert fake.count("oembed") == guard.threshold
    assert guard.why == "breaker open"
    await resolver.card_art(card())
    assert fake.count("oembed") == guard.threshold  # the breaker keeps Spotify out of it
    track = await catalog.get_track(A)
    assert track is not None and track.art_checked_at is None


async def test_web_api_malformed_json_and_500_are_failures(
    keyed: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    fake.tracks[B] = Canned(200, b"<html>", "application/json")
    assert (await keyed.card_art(card(B))).source == "drawn"
    fake.tracks[B] = Canned(500, b"", "text/plain")
    assert (await keyed.card_art(card(B))).source == "drawn"
    fake.token = Canned(200, b"nope", "application/json")  # a broken token endpoint too
    keyed.sources[1].spotify.auth_manager.cache_handler.token_info = None
    assert (await keyed.card_art(card(B))).source == "drawn"
    track = await catalog.get_track(B)
    assert track is not None and track.art_checked_at is None
    assert keyed.sources[1].guard.failures == 3


async def test_a_token_refusal_logs_its_oauth_code_but_no_body(
    keyed: ArtResolver, fake: FakeSpotify, caplog: pytest.LogCaptureFixture
) -> None:
    """The token endpoint's OAuth error code is worth a log line; a page that is no such code
    (here a proxy echoing the request's credentials) is not logged."""
    caplog.set_level(logging.DEBUG)
    webapi = keyed.sources[1]
    fake.token = Canned(502, b"<html>Authorization: Basic c2VjcmV0</html>", "text/html")
    assert (await keyed.card_art(card(B))).source == "drawn"
    fake.token = as_json({"error": "invalid_client"}, 400)
    webapi.spotify.auth_manager.cache_handler.token_info = None
    assert (await keyed.card_art(card(C))).source == "drawn"
    assert "c2VjcmV0" not in caplog.text and "<html>" not in caplog.text
    assert "token request refused (unexpected answer)" in caplog.text
    assert "token request refused (invalid_client)" in caplog.text


async def test_slow_upstream_times_out_to_the_drawn_card(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    fake.oembed[A] = as_json({"thumbnail_url": fake.picture("a")}, delay=2.0)
    started = time.monotonic()
    art = await resolver.card_art(card())
    elapsed = time.monotonic() - started
    assert art.source == "drawn" and elapsed < DEADLINE + 0.5
    assert_drawn(art.picture)
    await asyncio.sleep(0.3)  # the lookup's own timeout (0.4 s) has passed by now
    assert resolver.sources[0].guard.failures == 1


async def test_an_answer_after_the_deadline_is_cached_for_next_time(
    catalog: Store, fake: FakeSpotify
) -> None:
    resolver = ArtResolver.from_settings(settings(fake, timeout=5.0), catalog, deadline=0.3)
    try:
        fake.oembed_found(A, "a", delay=0.6)
        first = await resolver.card_art(card())
        assert first.source == "drawn"
        # The lookup goes on in the background; wait (generously: the CPU may be busy) for it.
        for _ in range(400):
            if not resolver.pending:
                break
            await asyncio.sleep(0.025)
        seen = fake.count()
        # No network this time, however long we allow (a slow CI must not make it "drawn").
        resolver.deadline = 10.0
        second = await resolver.card_art(card())
        assert second.source == "catalog" and second.url == fake.image_url("a")
        assert fake.count() == seen
    finally:
        await resolver.close()


@pytest.mark.parametrize(
    "picture",
    [
        Canned(200, b"<html>hello</html>", "text/html"),
        Canned(200, b"\xff\xd8 not really a jpeg", "image/jpeg"),
        Canned(200, jpeg(8), "image/jpeg"),  # a picture, but a useless one
        Canned(200, b"x" * (3 * 1024 * 1024), "image/jpeg"),
        Canned(404, b"gone", "text/plain"),
    ],
    ids=["html", "garbage", "tiny", "oversize", "404"],
)
async def test_art_url_without_a_usable_picture_is_forgotten(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify, picture: Canned
) -> None:
    fake.oembed_found(A, "a")
    fake.images["a"] = picture
    art = await resolver.card_art(card())
    assert art.source == "drawn"
    assert_drawn(art.picture)
    track = await catalog.get_track(A)
    assert track is not None and track.art_url is None and track.art_checked_at is not None


async def test_unreachable_spotify_still_gives_a_card(catalog: Store) -> None:
    closed = SpotifySettings(oembed_url="http://127.0.0.1:9/oembed", timeout=0.3)
    resolver = ArtResolver.from_settings(closed, catalog, deadline=DEADLINE)
    try:
        assert (await resolver.card_art(card())).source == "drawn"
    finally:
        await resolver.close()


async def test_concurrent_requests_for_one_track_share_one_lookup(
    resolver: ArtResolver, fake: FakeSpotify
) -> None:
    fake.oembed_found(A, "a")
    arts = await asyncio.gather(*(resolver.card_art(card()) for _ in range(5)))
    assert {a.source for a in arts} == {"oembed"}
    assert fake.count("oembed") == 1 and fake.count("img") == 1


# -- the guard and the pace --------------------------------------------------------------------


def test_breaker_opens_after_repeated_failures_and_closes_on_success() -> None:
    now = [0.0]
    guard = Guard("x", threshold=3, open_for=60, clock=lambda: now[0])
    for _ in range(2):
        guard.failed("timed out")
    assert guard.ready()
    guard.failed("timed out")
    assert not guard.ready() and guard.wait_time() == 60
    now[0] = 61
    assert guard.ready()  # half-open: one try
    guard.failed("HTTP 500")
    assert not guard.ready()  # failed again: open at once
    now[0] = 122
    guard.succeeded()
    guard.failed("timed out")
    assert guard.ready()  # the count started over


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-3") == 0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:42 GMT", now) == 42


async def test_pacer_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(5, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        await pacer.wait()
    assert slept == pytest.approx([0.2, 0.2, 0.2])


def test_check_image_reads_only_real_pictures() -> None:
    assert check_image(jpeg(64)) == ("JPEG", (64, 64))
    with pytest.raises(NoArt):
        check_image(b"GIF89a nothing")


# -- the service -------------------------------------------------------------------------------


async def test_service_card_image_uses_the_resolver(
    resolver: ArtResolver, catalog: Store, fake: FakeSpotify
) -> None:
    fake.oembed_found(A, "a")
    png = io.BytesIO()
    Image.new("RGB", (300, 300), (20, 90, 160)).save(png, format="PNG")
    fake.images["a"] = Canned(200, png.getvalue(), "image/png")  # album art may be a PNG
    # card_image never reads a photo, so no face model is needed here.
    service = MoodLifter(Settings(), catalog, reader=None, artwork=resolver)  # type: ignore[arg-type]
    try:
        art = await service.card_image(card())
        assert (art.data, art.kind, art.suffix) == (png.getvalue(), "png", "png")
        assert_drawn(await service.card_image(card(B)))  # oEmbed 404, no keys: drawn
        assert (await service.card_image(card(B))).suffix == "jpg"
    finally:
        await service.close()  # closes the resolver and the store; closing again is harmless


@pytest.mark.parametrize("given", ["client_id", "client_secret"])
async def test_half_of_the_spotify_credentials_is_warned_about(
    given: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """An id without its secret (or the reverse) would quietly mean "no Web API"."""
    with caplog.at_level("WARNING", logger="core.artwork.resolver"):
        built = ArtResolver.from_settings(SpotifySettings(**{given: Secret("abc")}), store)
    await built.close()
    missing = "secret" if given == "client_id" else "id"
    assert f"without the {missing}: the Web API is not used" in caplog.text
    assert "abc" not in caplog.text
