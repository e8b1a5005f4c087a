from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from core.catalog import MoodPrediction, assign_moods, import_sources
from core.errors import CatalogEmpty, UnknownUser
from core.recommend import Recommender
from core.store import Store
from core.store.schema import Delivery
from data.catalog_sources import SourceSpec
from tests.core.helpers import HITS_HEADER, MOODS_HEADER, hits_line, moods_line, track_id


async def load(store: Store, write_csv, tmp_path: Path, moods: dict[str, int]) -> None:
    lines, n = [], 0
    for mood, count in moods.items():
        for _ in range(count):
            lines.append(moods_line(n, mood))
            n += 1
    path = write_csv("moods.csv", MOODS_HEADER, lines)
    await import_sources(store, [SourceSpec(str(path))], tmp_path)


async def test_no_repeat_then_a_new_round_oldest_first(store: Store, write_csv, tmp_path) -> None:
    await load(store, write_csv, tmp_path, {"Calm": 5, "Sad": 3})
    user = await store.get_or_create_user("cli", "ann")
    first = [await store.pick_and_deliver(user.id, "calm", "fear") for _ in range(5)]
    assert len({p.track.id for p in first}) == 5
    assert all(p.track.mood == "calm" and p.round == 1 and not p.new_round for p in first)

    second = [await store.pick_and_deliver(user.id, "calm", "fear") for _ in range(5)]
    assert [p.new_round for p in second] == [True, False, False, False, False]
    assert all(p.round == 2 for p in second)
    # Least recently delivered first: round 2 replays round 1's order.
    assert [p.track.id for p in second] == [p.track.id for p in first]

    # Other moods and other users have their own rounds.
    assert (await store.pick_and_deliver(user.id, "sad")).round == 1
    bob = await store.get_or_create_user("cli", "bob")
    assert (await store.pick_and_deliver(bob.id, "calm")).round == 1


async def test_a_new_round_replays_disliked_songs_last(store: Store, write_csv, tmp_path) -> None:
    await load(store, write_csv, tmp_path, {"Calm": 4})
    user = await store.get_or_create_user("cli", "ann")
    first = [(await store.pick_and_deliver(user.id, "calm")).track.id for _ in range(4)]
    await store.rate(user.id, first[0], -1)
    await store.rate(user.id, first[2], -1)
    await store.rate(user.id, first[1], 1)

    second = [(await store.pick_and_deliver(user.id, "calm")).track.id for _ in range(4)]
    assert second == [first[1], first[3], first[0], first[2]]  # oldest first, 👎 after the rest


async def test_concurrent_picks_for_one_user_are_all_distinct(
    store: Store, write_csv, tmp_path
) -> None:
    await load(store, write_csv, tmp_path, {"Happy": 40})
    user = await store.get_or_create_user("telegram", "99")
    picks = await asyncio.gather(*(store.pick_and_deliver(user.id, "happy") for _ in range(30)))
    assert len({p.track.id for p in picks}) == 30
    async with store.sessions() as session:
        rows = (await session.scalars(select(Delivery))).all()
    assert len(rows) == 30


async def test_concurrent_picks_across_rounds(store: Store, write_csv, tmp_path) -> None:
    await load(store, write_csv, tmp_path, {"Energetic": 10})
    user = await store.get_or_create_user("discord", "5")
    picks = await asyncio.gather(*(store.pick_and_deliver(user.id, "energetic") for _ in range(30)))
    assert Counter(p.track.id for p in picks) == Counter({track_id(n): 3 for n in range(10)})
    assert Counter(p.round for p in picks) == {1: 10, 2: 10, 3: 10}
    assert sum(p.new_round for p in picks) == 2


async def test_unlabelled_tracks_are_served_only_once_they_have_a_mood(
    store: Store, write_csv, tmp_path
) -> None:
    path = write_csv("hits.csv", HITS_HEADER, [hits_line(1)])
    await import_sources(store, [SourceSpec(str(path))], tmp_path)
    user = await store.get_or_create_user("cli", "ann")
    recommender = Recommender(store)
    with pytest.raises(CatalogEmpty, match="no happy tracks"):
        await recommender.for_emotion(user, "happy")
    async with store.sessions() as session:
        await assign_moods(session, [MoodPrediction(track_id(1, "H"), "happy", 0.7)], "v1")
        await session.commit()
    card = await recommender.for_emotion(user, "happy")
    assert card.track_id == track_id(1, "H")


async def test_cards_follow_the_users_mode(store: Store, write_csv, tmp_path) -> None:
    await load(store, write_csv, tmp_path, {"Calm": 2, "Energetic": 2, "Sad": 1})
    recommender = Recommender(store, default_mode="lift")
    user = await store.get_or_create_user("cli", "ann")

    card = await recommender.for_emotion(user, "angry", confidence=0.8)
    assert (card.mood, card.emotion, card.confidence) == ("calm", "angry", 0.8)
    assert card.reason == "you look angry — here is something calm"
    assert card.spotify_url == f"https://open.spotify.com/track/{card.track_id}"
    assert (card.title, card.album, card.new_round, card.notes) == (
        f"Song {int(card.track_id[1:])}", f"Album {int(card.track_id[1:])}", False, (),
    )  # fmt: skip

    assert (await recommender.for_emotion(user, "angry", mode="match")).mood == "energetic"
    user = await store.set_mode(user.id, "match")
    assert (await recommender.for_emotion(user, "angry")).mood == "energetic"

    first = await recommender.for_emotion(user, "sad", again=True)
    again = await recommender.for_emotion(user, "sad", again=True)
    assert first.track_id == again.track_id
    assert again.new_round and again.notes == ()  # the adapters say it, once
    assert again.emotion is None and again.reason == "another sad one for you"


async def test_unknown_user_cannot_be_served(store: Store, write_csv, tmp_path) -> None:
    await load(store, write_csv, tmp_path, {"Calm": 1})
    with pytest.raises(UnknownUser):
        await store.pick_and_deliver(12345, "calm")


async def test_two_instances_serving_one_user_at_once_never_repeat(
    db_url: str, write_csv, tmp_path
) -> None:
    """Two stores with engines of their own (two bot instances on one database) serve /more
    for one user at the same moment: never the same track in a round, rounds exact."""
    async with await Store.open(db_url) as first, await Store.open(db_url) as second:
        await load(first, write_csv, tmp_path, {"Calm": 12})
        user = await first.get_or_create_user("telegram", "7")
        assert await second.get_or_create_user("telegram", "7") == user
        picks = await asyncio.gather(
            *(store.pick_and_deliver(user.id, "calm") for store in (first, second) * 18)
        )
    assert Counter(p.round for p in picks) == {1: 12, 2: 12, 3: 12}
    for round_ in (1, 2, 3):
        in_round = [p.track.id for p in picks if p.round == round_]
        assert sorted(in_round) == sorted(track_id(n) for n in range(12))
    assert sum(p.new_round for p in picks) == 2


async def test_the_database_itself_refuses_a_repeat(store: Store, write_csv, tmp_path) -> None:
    """Whatever the code above it does, UNIQUE(user, track, round) holds in the database."""
    from sqlalchemy.exc import IntegrityError

    await load(store, write_csv, tmp_path, {"Calm": 2})
    user = await store.get_or_create_user("cli", "ann")
    pick = await store.pick_and_deliver(user.id, "calm")
    async with store.sessions() as session:
        session.add(Delivery(user_id=user.id, track_id=pick.track.id, mood="calm", round=1))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_songs_moved_to_another_mood_are_served_there(
    store: Store, write_csv, tmp_path
) -> None:
    """Songs a user had in two rounds of one mood that new labels (or a new model) move to
    another mood: that mood serves them, without saying a round of it was finished."""
    await load(store, write_csv, tmp_path, {"Happy": 2})
    user = await store.get_or_create_user("cli", "ann")
    heard = [(await store.pick_and_deliver(user.id, "happy")).round for _ in range(4)]
    assert heard == [1, 1, 2, 2]
    await load(store, write_csv, tmp_path, {"Sad": 2})  # the same two tracks, labelled sad now
    picks = [await store.pick_and_deliver(user.id, "sad") for _ in range(2)]
    assert {p.track.id for p in picks} == {track_id(0), track_id(1)}
    assert not any(p.new_round for p in picks)
    assert (await store.pick_and_deliver(user.id, "sad")).new_round  # now sad's round is done
