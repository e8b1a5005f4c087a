"""The taste policy: on its own, and inside the store's pick (where no-repeat must still hold)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from core.catalog import import_sources
from core.store import Store
from core.taste import TASTE_FEATURES, TastePolicy
from data.catalog_sources import SourceSpec
from tests.core.helpers import MOODS_HEADER, track_id

GREEDY = TastePolicy(exploration=0.0)


def sound(valence: float, energy: float) -> tuple[float, ...]:
    """A point in taste space (:data:`TASTE_FEATURES` order) differing in valence and energy."""
    values = {"valence": valence, "energy": energy, "danceability": 0.5, "acousticness": 0.3}
    return tuple(values.get(name, 120.0) for name in TASTE_FEATURES)


def test_scores_rise_near_likes_and_fall_near_dislikes() -> None:
    candidates = [sound(0.9, 0.85), sound(0.5, 0.5), sound(0.1, 0.15)]
    rated = [sound(0.92, 0.9), sound(0.08, 0.1)]
    bright, middle, dark = GREEDY.scores(candidates, rated, [1, -1])
    assert bright > 0.3 and dark < -0.3
    assert dark < middle < bright
    # Dislikes alone: steer away from their region, everything else stays neutral.
    away = GREEDY.scores(candidates, [sound(0.08, 0.1)], [-1])
    assert away.argmin() == 2 and away[0] > away[2]


def test_without_ratings_the_pick_is_the_unpersonalised_random_one() -> None:
    candidates = [sound(random.Random(n).random(), 0.5) for n in range(50)]
    assert not GREEDY.scores(candidates, [], []).any()
    picks = [GREEDY.choose(candidates, [], [], random.Random(seed)) for seed in range(20)]
    assert picks == [random.Random(seed).randrange(50) for seed in range(20)]


def test_exploration_still_serves_tracks_far_from_the_likes() -> None:
    candidates = [sound(0.9, 0.9)] * 10 + [sound(0.1, 0.1)] * 10
    rated, values = [sound(0.9, 0.9)], [1]
    rng = random.Random(3)
    greedy = [GREEDY.choose(candidates, rated, values, rng) for _ in range(200)]
    assert all(i < 10 for i in greedy)
    exploring = TastePolicy(exploration=0.3)
    picks = [exploring.choose(candidates, rated, values, rng) for _ in range(400)]
    far = sum(i >= 10 for i in picks) / len(picks)
    assert 0.05 < far < 0.3  # about half of the 30 % random picks land far away


# --- inside the store ---------------------------------------------------------------------------

HEADER_FIELDS = MOODS_HEADER.split(",")


def _line(n: int, valence: float, energy: float, mood: str = "Happy") -> str:
    values = {
        "name": f"Song {n}", "album": f"Album {n}", "artist": f"Artist {n}",
        "id": track_id(n), "release_date": "2001-02-03", "popularity": "50",
        "length": "200000", "danceability": "0.5", "acousticness": "0.3", "energy": str(energy),
        "instrumentalness": "0.0", "liveness": "0.1", "valence": str(valence),
        "loudness": "-7.5", "speechiness": "0.05", "tempo": "120.0", "key": "5",
        "time_signature": "4", "mood": mood,
    }  # fmt: skip
    return ",".join(values[field] for field in HEADER_FIELDS)


BRIGHT = range(0, 20)  # valence and energy ~0.9
DARK = range(20, 40)  # ~0.1


async def _two_kinds(store: Store, write_csv, tmp_path: Path) -> None:
    jitter = random.Random(0)
    lines = [
        _line(n, 0.9 - 0.05 * jitter.random(), 0.9 - 0.05 * jitter.random()) for n in BRIGHT
    ] + [_line(n, 0.1 + 0.05 * jitter.random(), 0.1 + 0.05 * jitter.random()) for n in DARK]
    path = write_csv("kinds.csv", MOODS_HEADER, lines)
    await import_sources(store, [SourceSpec(str(path))], tmp_path)


def _kind(track: str) -> str:
    return "bright" if int(track[1:]) in BRIGHT else "dark"


async def test_liked_kind_rises_and_no_track_repeats_within_a_round(
    db_url: str, write_csv, tmp_path: Path
) -> None:
    async with await Store.open(db_url) as store:
        store.taste = GREEDY
        await _two_kinds(store, write_csv, tmp_path)
        ann = await store.get_or_create_user("telegram", "1")
        # Ann is served until she has one song of each kind, and says which she likes.
        served: list[str] = []
        while {_kind(t) for t in served} != {"bright", "dark"}:
            served.append((await store.pick_and_deliver(ann.id, "happy", "happy")).track.id)
        for track in served:
            await store.rate(ann.id, track, 1 if _kind(track) == "bright" else -1)

        picks = [(await store.pick_and_deliver(ann.id, "happy")) for _ in range(40 - len(served))]
        after = [p.track.id for p in picks]
        # Every remaining bright song comes before any dark one; nothing repeats in the round.
        kinds = [_kind(t) for t in after]
        bright_left = 20 - sum(_kind(t) == "bright" for t in served)
        assert kinds == ["bright"] * bright_left + ["dark"] * (len(after) - bright_left)
        assert len(set(served + after)) == 40
        assert all(p.round == 1 for p in picks)
        # The next round starts over, least recently given first, the songs she disliked last.
        disliked = {t for t in served if _kind(t) == "dark"}
        again = await store.pick_and_deliver(ann.id, "happy")
        oldest_not_disliked = next(t for t in served + after if t not in disliked)
        assert again.new_round and again.track.id == oldest_not_disliked


async def test_a_user_without_ratings_is_served_as_before(
    db_url: str, write_csv, tmp_path: Path
) -> None:
    async with await Store.open(db_url) as store:
        store.taste = GREEDY
        await _two_kinds(store, write_csv, tmp_path)
        ann = await store.get_or_create_user("telegram", "1")
        bob = await store.get_or_create_user("telegram", "2")
        first = await store.pick_and_deliver(ann.id, "happy")
        await store.rate(ann.id, first.track.id, 1)  # Ann's taste is hers alone
        picks = [(await store.pick_and_deliver(bob.id, "happy")).track.id for _ in range(20)]
        assert len(set(picks)) == 20
        assert set(Counter(_kind(t) for t in picks)) == {"bright", "dark"}
