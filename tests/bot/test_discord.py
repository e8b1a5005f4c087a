"""The Discord bot end to end: the real discord.py client against SimCord's in-memory Discord.

SimCord runs discord.py's own gateway parsing, app-command tree and views; only Discord itself
is simulated. Behind the client is the real core: a SQLite file in ``tmp_path``, the shared
music catalog, real face detection and the real emotion model. The tests act as users would
(slash commands, clicks, DMs) and assert on what the user sees and on the database.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import numpy as np
import pytest
import simcord
from PIL import Image
from skimage import data as skdata

from bot import wording
from bot.discord_bot import (
    ANOTHER_SONG_ID,
    CHART_FILENAME,
    SYNTAX,
    DiscordOptions,
    MoodLiftBot,
    build_client,
    card_embed,
    card_message,
    history_line,
    render,
)
from core.config import (
    LimitsSettings,
    Settings,
)
from core.replies import FaceReading, HistoryItem, Picture, TrackCard
from core.service import (
    CHAT_HINT,
    KEPT,
    LINK_NOT_PHOTO,
    NEED_SELFIE,
    NO_FACE,
    NOT_RATABLE,
    NOTHING_TO_FORGET,
    SLOW_DOWN_SAID_FOR,
    MoodLifter,
)
from tests.bot.conftest import service_settings

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SLOW = pytest.mark.simcord(settle_timeout=120.0)  # face detection + inference on a busy CPU
pytestmark = SLOW


# --------------------------------------------------------------------------- fixtures


def _jpeg(array: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    """A real photo with one clear face (Eileen Collins, from scikit-image)."""
    return _jpeg(skdata.astronaut())


@pytest.fixture
def limits() -> LimitsSettings:
    """Generous for photos; a test about floods parametrizes its own."""
    return LimitsSettings(photos_per_minute=100)


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path, limits: LimitsSettings) -> Settings:
    """Real settings: a SQLite file in tmp_path, the labelled catalog from the shared data."""
    return service_settings(tmp_path, music_dir, limits)


@pytest.fixture
def options() -> DiscordOptions:
    """Public answers in servers (the default), so other members' clicks can be tested."""
    return DiscordOptions()


@pytest.fixture
def simcord_bot(service: MoodLifter, options: DiscordOptions) -> MoodLiftBot:
    """What SimCord runs: the client exactly as production builds it."""
    return build_client(service, options)


@pytest.fixture
def guild(simcord_env: simcord.Env) -> simcord.GuildHandle:
    return simcord_env.create_guild("Listening party")


@pytest.fixture
def channel(guild: simcord.GuildHandle) -> simcord.ChannelHandle:
    return guild.create_text_channel("music")


@pytest.fixture
def alice(simcord_env: simcord.Env, guild: simcord.GuildHandle) -> simcord.MemberActor:
    return guild.add_member(simcord_env.create_user("alice"))


@pytest.fixture
def bob(simcord_env: simcord.Env, guild: simcord.GuildHandle) -> simcord.MemberActor:
    return guild.add_member(simcord_env.create_user("bob"))


# --------------------------------------------------------------------------- helpers


def answer(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    """What the user sees: the deferred 'thinking…' message as completed, or the reply."""
    message = result.followups[-1] if result.followups else result.response
    assert message is not None, result
    return message


def card_of(message: simcord.ResponseMessage) -> discord.Embed:
    assert len(message.embeds) == 1, message
    return message.embeds[0]


def buttons(message: simcord.ResponseMessage) -> list[dict[str, Any]]:
    return [item for row in message.components for item in row.get("components", [])]


def rows(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the bot's SQLite file directly, as an operator would."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(sql, params).fetchall()


def internal_id(db_path: Path, discord_id: int) -> int | None:
    """The store's id for a Discord user, or None when the store has no such user."""
    found = rows(
        db_path,
        "SELECT id FROM users WHERE platform = 'discord' AND platform_user_id = ?",
        str(discord_id),
    )
    return found[0][0] if found else None


def counts(db_path: Path, user_id: int) -> dict[str, int]:
    """How many rows each table holds for one store user id (orphans included)."""
    return {
        "users": rows(db_path, "SELECT count(*) FROM users WHERE id = ?", user_id)[0][0],
        "deliveries": rows(db_path, "SELECT count(*) FROM deliveries WHERE user_id = ?", user_id)[
            0
        ][0],
        "detections": rows(db_path, "SELECT count(*) FROM detections WHERE user_id = ?", user_id)[
            0
        ][0],
        "ratings": rows(db_path, "SELECT count(*) FROM ratings WHERE user_id = ?", user_id)[0][0],
    }


def interaction_calls(env: simcord.Env) -> list[tuple[str, Any]]:
    """The bot's interaction REST calls in order: ("callback", type) or ("followup", None)."""
    calls = []
    for request in env.http_requests:
        if request.path.startswith("/interactions/") and request.path.endswith("/callback"):
            calls.append(("callback", (request.json or {}).get("type")))
        elif request.path.startswith("/webhooks/"):
            calls.append(("followup", request.method))
    return calls


async def selfie(
    actor: simcord.MemberActor, channel: simcord.ChannelHandle, jpeg: bytes
) -> simcord.ResponseMessage:
    result = await actor.slash(channel, "selfie", photo=("selfie.jpg", jpeg))
    return answer(result)


# --------------------------------------------------------------------------- set-up


async def test_commands_are_synced_and_no_privileged_intent_is_needed(
    simcord_env: simcord.Env, alice: simcord.MemberActor, channel: simcord.ChannelHandle
) -> None:
    assert set(alice.available_commands(channel)) == {
        "selfie",
        "more",
        "mood",
        "mode",
        "history",
        "forget",
        "help",
    }
    intents = simcord_env.bot.intents
    assert not (intents.message_content or intents.members or intents.presences)
    # Installed to servers, used there and in the bot's DMs (never in group or others' DMs).
    tree = simcord_env.bot.tree
    for payload in (command.to_dict(tree) for command in tree.get_commands()):
        assert payload["contexts"] == [0, 1] and payload["integration_types"] == [0], payload


async def test_help_explains_the_commands(
    alice: simcord.MemberActor, channel: simcord.ChannelHandle, service: MoodLifter
) -> None:
    result = await alice.slash(channel, "help")
    shown = answer(result).content
    assert shown == service.help(wording.DISCORD_HOW_TO_SEND, SYNTAX).text
    assert shown.startswith(wording.DISCORD_HOW_TO_SEND) and "/selfie photo:" in shown
    assert "/more" in shown and "/forget" in shown
    # Arguments as Discord takes them (named options), not as Telegram does.
    assert "/mode mode:lift|match" in shown and "/history count:50" in shown
    assert "/mode lift" not in shown and "/history 50" not in shown
    mode = answer(await alice.slash(channel, "mode")).content
    assert "/mode mode:lift or /mode mode:match" in mode


# --------------------------------------------------------------------------- /selfie


async def test_selfie_defers_then_answers_with_a_card_and_buttons(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    result = await alice.slash(channel, "selfie", photo=("selfie.jpg", astronaut_jpeg))

    # Acknowledged at once with "thinking…" (type 5), then completed by a follow-up.
    calls = interaction_calls(simcord_env)
    assert calls[0] == ("callback", 5), calls
    assert ("followup", "POST") in calls[1:], calls
    message = answer(result)
    assert not message.ephemeral

    embed = card_of(message)
    (track_id, name, artist, album, mood) = rows(
        db_path,
        "SELECT tracks.id, name, artist, album, deliveries.mood FROM deliveries "
        "JOIN tracks ON tracks.id = deliveries.track_id",
    )[0]
    assert embed.title == name
    assert embed.url == f"https://open.spotify.com/track/{track_id}"
    assert artist in (embed.description or "")
    if album:
        assert album in (embed.description or "")
    fields = {field.name: field.value for field in embed.fields}
    emotion, _, confidence = fields[wording.LABEL_EMOTION].partition(" ")
    assert emotion in EMOTIONS
    assert confidence.endswith(" %")
    assert fields[wording.LABEL_MOOD] == mood
    assert fields[wording.LABEL_WHY]
    # The drawn card travels with the message and is the embed's image.
    assert embed.image.url == "attachment://card.jpg"
    assert [a.filename for a in message.attachments] == ["card.jpg"]
    jpeg = await message.attachments[0].read()
    assert jpeg.startswith(b"\xff\xd8\xff")

    spotify, another, like, dislike = buttons(message)
    assert (like["label"], like["custom_id"]) == (wording.LIKE, f"moodlift:rate:up:{track_id}")
    assert (dislike["label"], dislike["custom_id"]) == (
        wording.DISLIKE,
        f"moodlift:rate:down:{track_id}",
    )
    assert spotify["style"] == discord.ButtonStyle.link.value
    assert spotify["label"] == wording.OPEN_IN_SPOTIFY
    assert spotify["url"] == embed.url
    assert another["label"] == wording.ANOTHER_SONG
    assert another["custom_id"] == ANOTHER_SONG_ID


async def test_a_non_image_attachment_gets_a_clear_reply(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    db_path: Path,
) -> None:
    result = await alice.slash(channel, "selfie", photo=("notes.txt", b"just some words"))

    assert not result.deferred
    assert result.ephemeral
    assert answer(result).content == wording.NOT_A_PHOTO
    assert internal_id(db_path, alice.id) is None


async def test_a_file_named_like_a_photo_that_is_not_one_gets_the_core_explanation(
    alice: simcord.MemberActor, channel: simcord.ChannelHandle, db_path: Path
) -> None:
    message = await selfie(alice, channel, b"this is not a JPEG at all")

    assert not message.embeds
    assert "picture" in message.content.lower() or "photo" in message.content.lower()
    assert rows(db_path, "SELECT count(*) FROM deliveries") == [(0,)]


@pytest.mark.parametrize("options", [DiscordOptions(max_image_bytes=10_000)])
async def test_an_oversize_photo_is_refused_before_download(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    result = await alice.slash(channel, "selfie", photo=("big.jpg", astronaut_jpeg))

    assert answer(result).content == wording.too_big(10_000)
    assert result.ephemeral
    # A large file that is no picture at all is told so, not to send a smaller one.
    result = await alice.slash(channel, "selfie", photo=("clip.mp4", b"\x00" * 20_000))
    assert answer(result).content == wording.NOT_A_PHOTO
    assert not any("cdn" in request.path for request in simcord_env.http_requests)


async def test_a_photo_without_a_face_says_so(
    alice: simcord.MemberActor, channel: simcord.ChannelHandle, db_path: Path
) -> None:
    message = await selfie(alice, channel, _jpeg(skdata.coffee()))

    assert not message.embeds
    assert "face" in message.content
    assert rows(db_path, "SELECT count(*) FROM deliveries") == [(0,)]


# --------------------------------------------------------------------------- more songs


async def test_another_song_button_gives_unseen_tracks_even_after_a_restart(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    service: MoodLifter,
    options: DiscordOptions,
) -> None:
    first = await selfie(alice, channel, astronaut_jpeg)
    seen = [card_of(first).url]
    mood = {f.name: f.value for f in card_of(first).fields}[wording.LABEL_MOOD]

    for _ in range(3):
        result = await alice.click(first.message, custom_id=ANOTHER_SONG_ID)
        assert result.deferred or result.followups or result.response
        card = card_of(answer(result))
        assert {f.name: f.value for f in card.fields}[wording.LABEL_MOOD] == mood
        seen.append(card.url)

    # A new process: the persistent view is registered again in setup_hook.
    await simcord_env.restart_bot(build_client(service, options))
    result = await alice.click(first.message, custom_id=ANOTHER_SONG_ID)
    seen.append(card_of(answer(result)).url)

    assert len(set(seen)) == len(seen), seen
    # Cards carry components only; the one registered persistent view answers every click.
    assert len(simcord_env.bot.persistent_views) == 1


async def test_the_button_acts_for_whoever_clicks_it(
    alice: simcord.MemberActor,
    bob: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    card = await selfie(alice, channel, astronaut_jpeg)

    result = await bob.click(card.message, custom_id=ANOTHER_SONG_ID)

    # Bob never sent a selfie: he is asked for one (and only he sees it, though answers in
    # this server are public), not given a song for Alice's mood.
    asked = answer(result)
    assert not asked.embeds and "selfie" in asked.content.lower()
    assert asked.ephemeral
    assert not [m for m in channel.history(viewer=alice) if "selfie first" in m.content]

    # With a selfie of his own, his press brings a song for him, and the card says so.
    await selfie(bob, channel, astronaut_jpeg)
    song = answer(await bob.click(card.message, custom_id=ANOTHER_SONG_ID))
    (embed,) = song.embeds
    assert not song.ephemeral
    assert embed.footer.text.endswith(wording.FOR_WHOM.format(name=bob.name))


async def test_more_needs_a_selfie_first_then_gives_a_new_song(
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    before = answer(await alice.slash(channel, "more"))
    assert not before.embeds
    assert before.content == f"{NEED_SELFIE}\n{wording.DISCORD_SELFIE_HOW}"  # and how, here
    assert before.ephemeral  # for the asker alone, as when the button is pressed

    first = card_of(await selfie(alice, channel, astronaut_jpeg))
    result = await alice.slash(channel, "more")
    second = card_of(answer(result))
    assert not answer(result).ephemeral  # songs are for sharing

    assert result.followups or result.response
    assert second.url != first.url
    assert rows(db_path, "SELECT count(DISTINCT track_id) FROM deliveries") == [(2,)]


async def test_more_is_acknowledged_in_time_when_the_store_is_slow(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    service: MoodLifter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/more looks up whether the asker has a mood before it acknowledges (that decides who
    sees the answer); a store slower than Discord's three seconds must not cost the answer."""
    await selfie(alice, channel, astronaut_jpeg)
    lookup = service.store.find_user_and_reading

    async def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3.5)  # a busy database
        return await lookup(*args, **kwargs)

    monkeypatch.setattr(service.store, "find_user_and_reading", slow_lookup)
    result = await alice.slash(channel, "more")
    assert not simcord_env.errors, simcord_env.errors
    assert card_of(answer(result)).title
    assert not answer(result).ephemeral


# --------------------------------------------------------------------------- ratings, /history


def history_lines(message: simcord.ResponseMessage) -> list[str]:
    """The song lines of a /history answer."""
    return (card_of(message).description or "").splitlines()


async def test_rate_see_it_in_history_change_it_and_forget_it(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    bob: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
    service: MoodLifter,
    options: DiscordOptions,
) -> None:
    first = await selfie(alice, channel, astronaut_jpeg)
    track = (card_of(first).url or "").rsplit("/", 1)[1]
    like, dislike = f"moodlift:rate:up:{track}", f"moodlift:rate:down:{track}"

    liked = answer(await alice.click(first.message, custom_id=like))
    assert liked.ephemeral and "👍" in liked.content  # quiet: only Alice sees it
    assert rows(db_path, "SELECT track_id, value FROM ratings") == [(track, 1)]

    listing = answer(await alice.slash(channel, "history"))
    assert card_of(listing).title == "Your last song"
    (line,) = history_lines(listing)
    assert f"(https://open.spotify.com/track/{track})" in line
    assert "👍" in line and "→" in line

    # A change of mind, after a restart: the dynamic buttons of old cards still answer.
    await simcord_env.restart_bot(build_client(service, options))
    changed = answer(await alice.click(first.message, custom_id=dislike))
    assert changed.ephemeral and "👎" in changed.content
    (line,) = history_lines(answer(await alice.slash(channel, "history", count=50)))
    assert "👎" in line and "👍" not in line

    # Bob sees Alice's public card; his click rates nothing for anyone.
    refused = answer(await bob.click(first.message, custom_id=like))
    assert refused.ephemeral and refused.content == NOT_RATABLE
    alice_id = internal_id(db_path, alice.id)
    assert rows(db_path, "SELECT user_id, value FROM ratings") == [(alice_id, -1)]

    question = answer(await alice.slash(channel, "forget"))
    await alice.click(question.message, label=wording.FORGET_YES)
    assert rows(db_path, "SELECT count(*) FROM ratings") == [(0,)]
    after = answer(await alice.slash(channel, "history"))
    assert not after.embeds and "selfie" in after.content


async def test_history_counts_outside_1_to_100_never_reach_the_bot(
    simcord_env: simcord.Env, alice: simcord.MemberActor, channel: simcord.ChannelHandle
) -> None:
    """Discord's client refuses them against the option's declared range, as SimCord does."""
    for junk in (0, -3, 101, 10**9):
        with pytest.raises(simcord.OptionError, match=r"must be [≥≤]"):
            await alice.slash(channel, "history", count=junk)
    assert not [r for r in simcord_env.http_requests if r.path.startswith("/interactions/")]


async def test_a_long_history_comes_in_several_embeds(
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    service: MoodLifter,
) -> None:
    await selfie(alice, channel, astronaut_jpeg)
    account = await service.store.find_user("discord", str(alice.id))
    assert account is not None
    for _ in range(99):
        await service.store.pick_and_deliver(account.id, "happy", "happy")

    result = await alice.slash(channel, "history", count=100)
    # The first page completes the "thinking…" message; the rest follow it.
    assert result.response is not None
    pages = [card_of(message) for message in (result.response, *result.followups)]
    assert len(pages) > 1
    assert all(len(page.description or "") <= 4096 for page in pages)
    lines = [line for page in pages for line in (page.description or "").splitlines()]
    assert [int(line.split(".")[0]) for line in lines] == list(range(1, 101))
    assert pages[0].title == "Your last 100 songs, newest first"


# --------------------------------------------------------------------------- /mood


async def test_mood_shows_the_seven_probabilities_and_a_chart(
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    before = answer(await alice.slash(channel, "mood"))
    assert not before.embeds and "selfie" in before.content.lower()

    card = card_of(await selfie(alice, channel, astronaut_jpeg))
    message = answer(await alice.slash(channel, "mood"))

    embed = card_of(message)
    card_emotion = {f.name: f.value for f in card.fields}[wording.LABEL_EMOTION].split()[0]
    assert embed.title.split()[0] == card_emotion
    for emotion in EMOTIONS:
        assert emotion in embed.description
    assert embed.description.count(" %") == 7 + 1  # the seven rows and the headline
    assert embed.image.url == f"attachment://{CHART_FILENAME}"
    assert [a.filename for a in message.attachments] == [CHART_FILENAME]
    (stored_emotion,) = rows(db_path, "SELECT emotion FROM detections")[0]
    assert stored_emotion == card_emotion


# --------------------------------------------------------------------------- /mode


async def test_mode_sets_and_shows_the_preference(
    alice: simcord.MemberActor, channel: simcord.ChannelHandle, db_path: Path
) -> None:
    changed = answer(await alice.slash(channel, "mode", mode="match"))
    shown = answer(await alice.slash(channel, "mode"))

    assert "match" in changed.content
    assert "match" in shown.content
    assert rows(db_path, "SELECT mode FROM users WHERE platform_user_id = ?", str(alice.id)) == [
        ("match",)
    ]


# --------------------------------------------------------------------------- /forget


async def test_forget_asks_first_then_removes_every_row(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    bob: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    await selfie(alice, channel, astronaut_jpeg)
    await selfie(bob, channel, astronaut_jpeg)
    alice_id, bob_id = internal_id(db_path, alice.id), internal_id(db_path, bob.id)
    assert alice_id is not None and bob_id is not None
    everything = {"users": 1, "deliveries": 1, "detections": 1, "ratings": 0}
    assert counts(db_path, alice_id) == everything

    question = answer(await alice.slash(channel, "forget"))
    labels = [b["label"] for b in buttons(question)]
    assert labels == [wording.FORGET_YES, wording.FORGET_NO]
    assert counts(db_path, alice_id) == everything  # nothing happens before the answer

    assert question.ephemeral  # in a server only Alice sees it (and only she can press it)
    with pytest.raises(simcord.SetupError, match="not visible"):
        await bob.click(question.message, label=wording.FORGET_YES)
    assert counts(db_path, alice_id) == everything

    done = await alice.click(question.message, label=wording.FORGET_YES)

    edited = answer(done)
    assert edited.id == question.id  # the question is replaced by the outcome
    assert "forgotten" in edited.content.lower()
    assert not edited.components
    assert counts(db_path, alice_id) == {
        "users": 0,
        "deliveries": 0,
        "detections": 0,
        "ratings": 0,
    }
    assert internal_id(db_path, alice.id) is None
    assert counts(db_path, bob_id) == everything

    again = answer(await alice.slash(channel, "forget"))  # nothing stored: no question
    assert again.content == NOTHING_TO_FORGET and not again.components


async def test_forget_defers_before_it_waits_for_a_photo_on_its_way(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    """/forget first waits for the user's photo on its way (so that no reading lands after
    the deletion), up to 10 s: longer than Discord's 3 s for a first answer, so it answers
    "thinking…" at once and asks its question after."""
    await selfie(alice, channel, astronaut_jpeg)
    before = len(simcord_env.http_requests)
    question = answer(await alice.slash(channel, "forget"))
    first = simcord_env.http_requests[before]
    assert first.path.endswith("/callback") and first.json["type"] == 5  # deferred, at once
    assert [b["label"] for b in buttons(question)] == [wording.FORGET_YES, wording.FORGET_NO]
    assert question.ephemeral


async def test_forget_can_be_called_off(
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    await selfie(alice, channel, astronaut_jpeg)
    question = answer(await alice.slash(channel, "forget"))

    kept = answer(await alice.click(question.message, label=wording.FORGET_NO))

    assert kept.content == KEPT
    user_id = internal_id(db_path, alice.id)
    assert user_id is not None
    assert counts(db_path, user_id)["deliveries"] == 1


# --------------------------------------------------------------------------- DMs, privacy


async def test_a_photo_sent_in_a_dm_gets_a_card(
    simcord_env: simcord.Env, astronaut_jpeg: bytes, db_path: Path
) -> None:
    carol = simcord_env.create_user("carol")
    dm = carol.dm_channel
    uploads = simcord_env.backend.store_attachments(dm.id, [("me.jpg", astronaut_jpeg)])

    await carol.send_dm("", attachments=uploads)

    reply = dm.last_message
    assert reply.author.id == simcord_env.bot.user.id
    (embed,) = reply.embeds
    assert embed.url and embed.url.startswith("https://open.spotify.com/track/")
    assert [b.label for row in reply.components for b in row.children] == [
        wording.OPEN_IN_SPOTIFY,
        wording.ANOTHER_SONG,
        wording.LIKE,
        wording.DISLIKE,
    ]
    carol_id = internal_id(db_path, carol.id)
    assert carol_id is not None
    assert counts(db_path, carol_id)["deliveries"] == 1

    await carol.send_dm("hello?")
    assert dm.last_message.content == f"{wording.DISCORD_HOW_TO_SEND}\n{CHAT_HINT}"  # a hint
    await carol.send_dm("https://tenor.com/view/happy-dance-gif-25341")  # the GIF picker's
    assert dm.last_message.content == LINK_NOT_PHOTO

    notes = simcord_env.backend.store_attachments(dm.id, [("notes.txt", b"words")])
    await carol.send_dm("", attachments=notes)
    assert dm.last_message.content == wording.NOT_A_PHOTO


async def test_a_dm_photo_is_answered_when_discord_refuses_the_typing_indicator(
    simcord_env: simcord.Env, astronaut_jpeg: bytes
) -> None:
    """The "typing…" indicator is cosmetic: Discord refusing it does not cost the card."""
    erin = simcord_env.create_user("erin")
    dm = erin.dm_channel
    uploads = simcord_env.backend.store_attachments(dm.id, [("me.jpg", astronaut_jpeg)])
    simcord_env.inject_error("POST", "/channels/*/typing", status=500)
    await erin.send_dm("", attachments=uploads)
    (embed,) = dm.last_message.embeds
    assert embed.url and embed.url.startswith("https://open.spotify.com/track/")


async def test_a_card_discord_refuses_is_not_used_up_nor_logged_as_a_crash(
    simcord_env: simcord.Env, astronaut_jpeg: bytes, db_path: Path, caplog
) -> None:
    """DMs closed to the bot (50007) or missing permissions: the song never arrived, so it is
    not in the user's history; nothing broke on our side, so no error with tracebacks."""
    dave = simcord_env.create_user("dave")
    uploads = simcord_env.backend.store_attachments(
        dave.dm_channel.id, [("me.jpg", astronaut_jpeg)]
    )
    simcord_env.inject_error(
        "POST", "/channels/*/messages", status=403, code=50007,
        message="Cannot send messages to this user", times=None,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bot.discord_bot"):
        await dave.send_dm("", attachments=uploads)
    assert rows(db_path, "SELECT count(*) FROM deliveries") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM detections") == [(1,)]
    ours = [r for r in caplog.records if r.name == "bot.discord_bot"]
    assert not [r for r in ours if r.levelno >= logging.WARNING]
    assert any("refuses the bot's answer" in r.getMessage() for r in ours)


async def test_notices_to_a_dm_that_refuses_the_bot_are_no_error(
    simcord_env: simcord.Env, caplog: pytest.LogCaptureFixture
) -> None:
    """DMs closed right after writing: the help and "not a photo" answers are refused, which is
    logged like a refused card (INFO), not as a crash followed by a refused apology."""
    dave = simcord_env.create_user("dave")
    simcord_env.inject_error(
        "POST", "/channels/*/messages", status=403, code=50007,
        message="Cannot send messages to this user", times=None,
    )  # fmt: skip
    notes = simcord_env.backend.store_attachments(dave.dm_channel.id, [("notes.txt", b"words")])
    with caplog.at_level(logging.INFO, logger="bot.discord_bot"):
        await dave.send_dm("hello?")
        await dave.send_dm("", attachments=notes)
    assert not simcord_env.errors  # nothing escaped the handler
    ours = [r for r in caplog.records if r.name == "bot.discord_bot"]
    assert not [r for r in ours if r.levelno >= logging.WARNING]
    refusals = [r for r in ours if "refuses the bot's answer" in r.getMessage()]
    assert len(refusals) == 2


async def test_a_selfie_card_discord_refuses_to_follow_up_is_not_used_up(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    """/selfie's card refused by Discord (here a 400 on the follow-up): the song never arrived,
    so it is not in the user's history and comes again; the reading is kept."""
    simcord_env.inject_error(
        "POST", "/webhooks/*", status=400, code=50035, message="Invalid Form Body", times=1
    )
    await alice.slash(channel, "selfie", photo=("selfie.jpg", astronaut_jpeg))
    assert len(simcord_env.errors) == 1  # a real failure, logged (and so acknowledged)
    assert rows(db_path, "SELECT count(*) FROM deliveries") == [(0,)]
    assert rows(db_path, "SELECT count(*) FROM detections") == [(1,)]


async def test_a_dm_with_a_sticker_two_photos_or_a_forwarded_photo(
    simcord_env: simcord.Env,
    guild: simcord.GuildHandle,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    """A sticker gets the photo hint; each photo of a DM gets its own answer (a notice names
    its photo), also the photos of a forwarded message (its files are in the snapshot, not in
    the message itself)."""
    dm = alice.user.dm_channel
    sticker = simcord_env.backend.create_sticker(guild.id, "wave", alice.id)
    await alice.send_dm("", stickers=[sticker])
    assert dm.last_message.content == wording.NOT_A_PHOTO

    before = len(dm.history())
    two = simcord_env.backend.store_attachments(
        dm.id, [("a.jpg", astronaut_jpeg), ("b.jpg", astronaut_jpeg)]
    )
    await alice.send_dm("", attachments=two)
    answers = dm.history()[before + 1 :]
    assert [len(m.embeds) for m in answers] == [1, 1]

    # Of several photos, a notice names the one it is about.
    before = len(dm.history())
    wall = _jpeg(np.full((480, 640, 3), 128, np.uint8))  # a grey wall: no face
    mixed = simcord_env.backend.store_attachments(
        dm.id, [("me.jpg", astronaut_jpeg), ("my_wall_.jpg", wall)]
    )
    await alice.send_dm("", attachments=mixed)
    card, notice = dm.history()[before + 1 :]
    assert len(card.embeds) == 1 and not notice.embeds
    assert notice.content == f"my\\_wall\\_.jpg: {NO_FACE}"  # the name as written, no italics

    posted = await alice.send(channel, "me today", attachments=[("me.jpg", astronaut_jpeg)])
    before = len(dm.history())
    forwarded = await alice.forward(posted, dm)
    assert not forwarded.attachments and forwarded.message_snapshots
    (card,) = [m for m in dm.history()[before:] if m.author.id == simcord_env.bot.user.id]
    assert card.embeds[0].url.startswith("https://open.spotify.com/track/")
    user_id = internal_id(db_path, alice.id)
    assert user_id is not None and counts(db_path, user_id)["deliveries"] == 4


async def test_several_photos_that_fail_alike_get_one_notice_after_the_cards(
    simcord_env: simcord.Env, alice: simcord.MemberActor, astronaut_jpeg: bytes
) -> None:
    """Three screenshots and a selfie: the card, then one "no face" naming the three (it was
    one notice per photo, the same words three times)."""
    dm = alice.user.dm_channel
    wall = _jpeg(np.full((480, 640, 3), 128, np.uint8))
    files = [("shot_1.jpg", wall), ("me.jpg", astronaut_jpeg), ("shot_2.jpg", wall)]
    files += [("shot_3.jpg", wall), ("notes.pdf", b"%PDF-1.4")]
    before = len(dm.history())
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(dm.id, files))
    card, no_face, not_photo = dm.history()[before + 1 :]
    assert len(card.embeds) == 1
    assert no_face.content == f"shot\\_1.jpg, shot\\_2.jpg, shot\\_3.jpg: {NO_FACE}"
    assert not_photo.content == f"notes.pdf: {wording.NOT_A_PHOTO}"


async def test_words_asking_for_another_song_get_one(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    """ "more please" in a DM, "@bot another one" in a server: answered as /more."""
    dm = alice.user.dm_channel
    await alice.send_dm("more please")
    assert dm.last_message.content.startswith(NEED_SELFIE)
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(
        dm.id, [("me.jpg", astronaut_jpeg)]
    ))  # fmt: skip
    first = dm.last_message.embeds[0].url
    await alice.send_dm("more please")
    second = dm.last_message.embeds[0].url
    me = simcord_env.bot.user.mention
    asked = await alice.send(channel, f"{me} another one!")
    answer_ = channel.last_message
    assert answer_.reference.message_id == asked.id
    third = answer_.embeds[0].url
    assert len({first, second, third}) == 3
    assert all(url.startswith("https://open.spotify.com/track/") for url in (first, second, third))


async def test_a_forwarded_card_of_the_bot_is_no_selfie(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    """A card forwarded back to the bot (its drawn picture attached) is recognised, as on
    Telegram, instead of read for a face."""
    me = simcord_env.bot.user.mention
    await alice.send(channel, me, attachments=[("me.jpg", astronaut_jpeg)])
    card = channel.last_message
    assert card.attachments  # the drawn card (no album art offline)
    dm = alice.user.dm_channel
    before = len(dm.history())
    await alice.forward(card, dm)
    (said,) = [m for m in dm.history()[before:] if m.author.id == simcord_env.bot.user.id]
    assert said.content == wording.OWN_CARD


async def test_a_photo_gone_before_its_download_is_asked_for_again(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deleted with its message, or its link expired: the user hears to send it again, and
    no error is logged (it was the apology for a fault of ours, with a traceback)."""
    monkeypatch.setattr(simcord_env.backend.cdn, "get", lambda url: None)  # a 404 for any file
    dm = alice.user.dm_channel
    upload = simcord_env.backend.store_attachments(dm.id, [("me.jpg", astronaut_jpeg)])
    with caplog.at_level(logging.INFO):
        await alice.send_dm("", attachments=upload)
        assert dm.last_message.content == wording.PHOTO_GONE
        result = await alice.slash(channel, "selfie", photo=("me.jpg", astronaut_jpeg))
    assert answer(result).content == wording.PHOTO_GONE
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_photo_that_mentions_the_bot_in_a_server_channel_gets_a_card_in_reply(
    simcord_env: simcord.Env,
    guild: simcord.GuildHandle,
    alice: simcord.MemberActor,
    bob: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    """Discord shows a bot without the message-content intent only the messages that mention
    it: those are answered like a DM, as replies; the rest of the channel is left alone."""
    me = simcord_env.bot.user.mention
    await bob.send(channel, "look at this", attachments=[("cat.jpg", astronaut_jpeg)])
    await bob.send(channel, "hello everyone")
    assert [m.author.id for m in channel.history()] == [bob.id, bob.id]  # not ours: silence
    assert internal_id(db_path, bob.id) is None

    posted = await alice.send(
        channel, f"{me} how do I look?", attachments=[("me.jpg", astronaut_jpeg)]
    )
    card = channel.last_message
    assert card.author.id == simcord_env.bot.user.id
    assert card.reference is not None and card.reference.message_id == posted.id
    assert card.embeds[0].url.startswith("https://open.spotify.com/track/")
    assert not card.mentions  # the reply does not ping
    alice_id = internal_id(db_path, alice.id)
    assert alice_id is not None and counts(db_path, alice_id)["deliveries"] == 1
    (sent,) = [
        r.json for r in simcord_env.http_requests if r.method == "POST" and "message_reference" in (r.json or {})
    ]  # fmt: skip
    # A selfie deleted while it was read must not cost its card (the reply would be refused).
    assert sent["message_reference"]["fail_if_not_exists"] is False

    # Replying to a card (with its ping) is chatter for the channel, unless it is a photo.
    await bob.send(channel, "haha nice song", reply_to=card)
    assert channel.last_message.author.id == bob.id
    mine = await bob.send(channel, "", reply_to=card, attachments=[("me.jpg", astronaut_jpeg)])
    assert channel.last_message.reference.message_id == mine.id
    assert channel.last_message.embeds[0].url.startswith("https://open.spotify.com/track/")

    await alice.send(channel, f"{me} hi!")
    assert channel.last_message.content.startswith(wording.DISCORD_HOW_TO_SEND)
    await alice.send(channel, f"{me}", attachments=[("notes.txt", b"words")])
    assert channel.last_message.content == wording.NOT_A_PHOTO

    bare = guild.create_text_channel(
        "no-embeds", overwrites={guild.me: discord.PermissionOverwrite(embed_links=False)}
    )
    await alice.send(bare, f"{me}", attachments=[("me.jpg", astronaut_jpeg)])
    assert bare.last_message.content == wording.NEEDS_EMBED_LINKS
    assert counts(db_path, alice_id)["deliveries"] == 1  # no song spent there
    mute = guild.create_text_channel(
        "read-only", overwrites={guild.me: discord.PermissionOverwrite(send_messages=False)}
    )
    await alice.send(mute, f"{me}", attachments=[("me.jpg", astronaut_jpeg)])
    assert [m.author.id for m in mute.history()] == [alice.id]  # nothing it may say there
    # Without Read Message History no reply: the card names whose photo it answers, no ping.
    forgetful = guild.create_text_channel(
        "no-history",
        overwrites={guild.me: discord.PermissionOverwrite(read_message_history=False)},
    )
    await alice.send(forgetful, f"{me}", attachments=[("me.jpg", astronaut_jpeg)])
    card = forgetful.last_message
    assert card.reference is None and card.embeds[0].url.startswith("https://open.spotify.com/")
    assert card.content == alice.mention
    (sent,) = [
        r.json for r in simcord_env.http_requests
        if r.method == "POST" and (r.json or {}).get("content") == alice.mention
    ]  # fmt: skip
    assert sent["allowed_mentions"]["parse"] == []  # named, not pinged


@pytest.mark.parametrize("options", [DiscordOptions(ephemeral=True)])
async def test_with_private_answers_a_photo_mentioning_the_bot_is_pointed_to_selfie(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    me = simcord_env.bot.user.mention
    await alice.send(channel, f"{me}", attachments=[("me.jpg", astronaut_jpeg)])
    assert channel.last_message.content == wording.PRIVATE_ANSWERS_HERE
    await alice.send(channel, f"{me} hi")  # no help in the open either
    assert channel.last_message.content == wording.PRIVATE_ANSWERS_HERE
    assert internal_id(db_path, alice.id) is None
    help_ = answer(await alice.slash(channel, "help"))  # says only the private ways
    assert help_.ephemeral and help_.content.startswith(wording.DISCORD_HOW_TO_SEND_PRIVATELY)


async def test_in_a_server_a_card_is_public_but_readings_history_and_settings_are_private(
    alice: simcord.MemberActor, channel: simcord.ChannelHandle, astronaut_jpeg: bytes
) -> None:
    """Songs are for sharing; what the bot read on a face, the list of songs with their
    readings, /mode, /forget and /help are nobody else's business (default settings)."""
    card = await alice.slash(channel, "selfie", photo=("selfie.jpg", astronaut_jpeg))
    assert not card.ephemeral and card_of(answer(card)).url
    for command, options in (
        ("mood", {}),
        ("history", {}),
        ("mode", {"mode": "match"}),
        ("forget", {}),
        ("help", {}),
    ):
        result = await alice.slash(channel, command, **options)
        assert answer(result).ephemeral, command
    in_dm = await alice.user.slash("mood")
    assert not answer(in_dm).ephemeral  # a DM is private already


@pytest.mark.parametrize("options", [DiscordOptions(ephemeral=True)])
async def test_ephemeral_setting_keeps_answers_private_in_servers(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    result = await alice.slash(channel, "selfie", photo=("selfie.jpg", astronaut_jpeg))
    assert result.ephemeral
    assert answer(result).ephemeral
    assert card_of(answer(result)).title
    # Another song, seen by the presser alone, needs no "For alice" to say whose it is.
    more = answer(await alice.click(answer(result).message, custom_id=ANOTHER_SONG_ID))
    assert more.ephemeral and card_of(more).title
    assert wording.FOR_WHOM.format(name=alice.name) not in (card_of(more).footer.text or "")

    in_dm = await alice.user.slash("mode")
    assert not answer(in_dm).ephemeral  # nothing to hide in a DM


# --------------------------------------------------------------------------- errors


async def test_unexpected_errors_are_logged_and_the_user_gets_a_friendly_line(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = await selfie(alice, channel, astronaut_jpeg)
    with sqlite3.connect(db_path) as connection:  # the database breaks under the running bot
        connection.execute("DROP TABLE detections")

    with caplog.at_level(logging.ERROR, logger="bot.discord_bot"):
        command = await alice.slash(channel, "more")
        button = await alice.click(card.message, custom_id=ANOTHER_SONG_ID)

    for result in (command, button):
        assert answer(result).content == wording.SOMETHING_WENT_WRONG
    logged = [r for r in caplog.records if r.name == "bot.discord_bot"]
    assert [r.getMessage() for r in logged] == [
        "error while handling /more",
        f"error while handling {ANOTHER_SONG_ID}",
    ]
    assert all(r.exc_info and r.exc_info[0] is not None for r in logged)
    assert len(simcord_env.errors) == 2  # seen, and so acknowledged


async def test_an_error_in_a_dm_is_logged_and_answered(
    simcord_env: simcord.Env,
    astronaut_jpeg: bytes,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dave = simcord_env.create_user("dave")
    uploads = simcord_env.backend.store_attachments(
        dave.dm_channel.id, [("me.jpg", astronaut_jpeg)]
    )
    with sqlite3.connect(db_path) as connection:
        connection.execute("DROP TABLE detections")

    with caplog.at_level(logging.ERROR, logger="bot.discord_bot"):
        await dave.send_dm("", attachments=uploads)

    assert dave.dm_channel.last_message.content == wording.SOMETHING_WENT_WRONG
    (record,) = [r for r in caplog.records if r.name == "bot.discord_bot"]
    assert record.getMessage() == "unhandled error in on_message"
    assert record.exc_info and record.exc_info[0] is not None
    (seen,) = simcord_env.errors  # SimCord saw it too; reading it acknowledges it
    assert "no such table" in str(seen)


async def test_an_error_in_a_server_channel_is_answered_as_a_reply(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
    db_path: Path,
) -> None:
    """The apology answers the message that failed, as its card would have: in a busy channel
    a bare "something went wrong" is nobody's."""
    with sqlite3.connect(db_path) as connection:
        connection.execute("DROP TABLE detections")
    me = simcord_env.bot.user.mention
    posted = await alice.send(channel, f"{me} hi", attachments=[("me.jpg", astronaut_jpeg)])
    apology = channel.last_message
    assert apology.content == wording.SOMETHING_WENT_WRONG
    assert apology.reference is not None and apology.reference.message_id == posted.id
    assert len(simcord_env.errors) == 1  # seen (and so acknowledged)


# --------------------------------------------------------------------------- rendering


def _card(**changes: Any) -> TrackCard:
    base = TrackCard(
        track_id="4uLU6hMCjMI75M1A2tKUQC",
        title="Never Gonna Give You Up",
        artist="Rick Astley",
        album="Whenever You Need Somebody",
        mood="happy",
        spotify_url="https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC",
        emotion="sad",
        confidence=0.873,
        reason="you look sad — here is something happy",
    )
    return replace(base, **changes)


def test_a_card_embed_carries_the_facts_and_the_small_print() -> None:
    faces = tuple(
        FaceReading((0, 0, 10, 10), emotion, 0.5, {emotion: 0.5}) for emotion in ("sad", "happy")
    )
    embed = card_embed(_card(new_round=True, faces=faces))

    assert embed.title == "Never Gonna Give You Up"
    assert embed.url == "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC"
    assert embed.description == "by Rick Astley\nfrom the album Whenever You Need Somebody"
    assert [(f.name, f.value) for f in embed.fields] == [
        ("Emotion", "sad 87 %"),
        ("Song mood", "happy"),
        ("Why", "you look sad — here is something happy"),
    ]
    assert embed.footer.text == (
        "You've heard all my happy songs — starting a new round.\n2 faces: sad 50 %, happy 50 %."
    )


def test_names_in_a_card_embed_are_not_markdown() -> None:
    embed = card_embed(_card(title="*NSYNC_ Live", artist="~Tilde~ & __Co__", album="**Bold**"))
    assert embed.title == "\\*NSYNC\\_ Live"
    assert embed.description == "by \\~Tilde\\~ & \\_\\_Co\\_\\_\nfrom the album \\*\\*Bold\\*\\*"
    # A link or a mention in a name stays text: each of its characters escaped, not just the
    # first "[" (discord.py's escape_markdown leaves a link's inside alone).
    linked = card_embed(_card(artist="[a](https://x.example) **big** <@123>", title="x*" * 200))
    assert (linked.description or "").splitlines()[
        0
    ] == "by \\[a\\](https://x.example) \\*\\*big\\*\\* \\<@123>"
    assert linked.title is not None and len(linked.title) <= 256
    assert linked.title.endswith("…") and not linked.title.endswith("\\…")  # no split escape


def test_history_lines_show_names_as_written_and_link_after_them() -> None:
    item = HistoryItem(
        track_id="0" * 22, title="[Free](https://evil.example) (Live)", artist="A_B",
        spotify_url="https://open.spotify.com/track/" + "0" * 22, mood="calm", emotion="fear",
        rating=1, delivered_at=datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
    )  # fmt: skip
    assert history_line(3, item) == (
        "3. \\[Free\\](https://evil.example) (Live) by A\\_B · fear → calm · 👍 · "
        "2026-11-25 · [Spotify](https://open.spotify.com/track/0000000000000000000000)"
    )


def test_a_card_picture_is_attached_under_its_own_format() -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(png, format="PNG")
    sent = card_message(_card(), Picture(png.getvalue(), "png"))

    assert sent["file"].filename == "card.png"
    assert sent["embed"].image.url == "attachment://card.png"


async def test_remote_album_art_is_linked_not_downloaded() -> None:
    art = "https://i.scdn.co/image/ab67616d0000b273"
    sent = await render(None, _card(art_url=art))  # type: ignore[arg-type]  # never consulted

    assert sent["embed"].thumbnail.url == art
    assert "file" not in sent
    # 👍 / 👎 are dynamic items, each wrapping its button.
    assert [getattr(item, "item", item).label for item in sent["view"].children] == [
        wording.OPEN_IN_SPOTIFY,
        wording.ANOTHER_SONG,
        wording.LIKE,
        wording.DISLIKE,
    ]


@pytest.mark.parametrize("limits", [LimitsSettings(photos_per_minute=100, actions_per_minute=3)])
async def test_a_flood_of_presses_is_told_once_then_quietly_acknowledged(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    channel: simcord.ChannelHandle,
    astronaut_jpeg: bytes,
) -> None:
    card = await selfie(alice, channel, astronaut_jpeg)  # action 1 of 3
    served = [await alice.click(card.message, custom_id=ANOTHER_SONG_ID) for _ in range(2)]
    assert all(card_of(answer(result)).title for result in served)

    told = await alice.click(card.message, custom_id=ANOTHER_SONG_ID)
    assert told.ephemeral and answer(told).content.startswith("Whoa, that's a lot at once!")
    dropped = await alice.click(card.message, custom_id=ANOTHER_SONG_ID)
    # Acknowledged without a word (a deferred update: the spinner stops), not left to fail.
    assert dropped.acknowledged and not dropped.followups
    assert interaction_calls(simcord_env)[-1] == ("callback", 6)
    # A command must get an answer (or Discord shows "The application did not respond").
    command = await alice.slash(channel, "mood")
    assert command.ephemeral and answer(command).content == wording.STILL_CATCHING_UP


async def test_a_button_no_version_of_the_bot_knows_is_answered_not_left_to_fail(
    simcord_env: simcord.Env, alice: simcord.MemberActor, channel: simcord.ChannelHandle
) -> None:
    ids = ("moodlift:more", "moodlift:rate:up:local-123", "moodlift:forget:yes", "junk")
    buttons_ = [{"type": 2, "style": 1, "label": str(n), "custom_id": i} for n, i in enumerate(ids)]
    stored = simcord_env.backend.create_message(
        channel.id,
        simcord_env.bot.user.id,
        "a card of another version",
        components=[{"type": 1, "components": buttons_}],
    )
    old = simcord.results.to_discord_message(simcord_env, stored)
    for custom_id in ids:
        pressed = await alice.click(old, custom_id=custom_id)
        assert pressed.ephemeral and answer(pressed).content == wording.BUTTON_EXPIRED


async def test_a_channel_without_embed_links_is_told_before_any_song_is_spent(
    guild: simcord.GuildHandle, alice: simcord.MemberActor, astronaut_jpeg: bytes, db_path: Path
) -> None:
    bare = guild.create_text_channel(
        "no-embeds", overwrites={guild.me: discord.PermissionOverwrite(embed_links=False)}
    )
    for result in (
        await alice.slash(bare, "selfie", photo=("selfie.jpg", astronaut_jpeg)),
        await alice.slash(bare, "more"),
        await alice.slash(bare, "mood"),
    ):
        told = answer(result)
        assert result.ephemeral and told.content == wording.NEEDS_EMBED_LINKS
    assert internal_id(db_path, alice.id) is None  # nothing read, nothing stored
    assert "/more" in answer(await alice.slash(bare, "help")).content  # text still works


async def test_a_channel_without_attach_files_gets_the_card_without_its_picture(
    simcord_env: simcord.Env,
    guild: simcord.GuildHandle,
    alice: simcord.MemberActor,
    astronaut_jpeg: bytes,
) -> None:
    bare = guild.create_text_channel(
        "no-files", overwrites={guild.me: discord.PermissionOverwrite(attach_files=False)}
    )
    card = await selfie(alice, bare, astronaut_jpeg)  # offline: a drawn card, normally a file
    embed = card_of(card)
    assert embed.url and embed.url.startswith("https://open.spotify.com/track/")
    assert not embed.image.url and not card.attachments
    summary = answer(await alice.slash(bare, "mood"))
    assert card_of(summary).title and not summary.attachments  # no chart either


def test_interaction_tokens_are_scrubbed_from_discord_py_debug_logs(
    simcord_bot: MoodLiftBot,
) -> None:
    """discord.py logs each REST call's URL at DEBUG; answering an interaction puts its token
    in the path. (SimCord answers below discord.py's HTTP logging, so records are made here in
    discord.py's own formats.)"""
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OjEyMzQ1Njc4OTAxMjM0NTY3ODk-abc_DEF.x"
    api = "https://discord.com/api/v10"
    records = [
        logging.LogRecord(
            "discord.webhook.async_", logging.DEBUG, __file__, 1,
            "Webhook ID %s with %s %s has returned status code %s",
            (123, "POST", f"{api}/webhooks/123/{token}", 200), None,
        ),
        logging.LogRecord(
            "discord.http", logging.DEBUG, __file__, 1, "%s %s with %s has returned %s",
            ("POST", f"{api}/interactions/987/{token}/callback", '{"type":5}', 204), None,
        ),
    ]  # fmt: skip
    for record in records:
        for redactor in logging.getLogger(record.name).filters:  # installed with the client
            redactor.filter(record)
        shown = logging.Formatter().format(record)
        assert token not in shown and "/<token>" in shown, shown

    # The gateway logs whole events: an interaction's token, a DM's selfie link.
    link = "https://cdn.discordapp.com/attachments/1/2/me.jpg?ex=6a&is=6b&hm=7c"
    event = {
        "t": "INTERACTION_CREATE",
        "d": {"token": token, "attachments": [{"url": link, "proxy_url": link}]},
    }
    record = logging.LogRecord(
        "discord.gateway", logging.DEBUG, __file__, 1,
        "For Shard ID %s: WebSocket Event: %s", (None, event), None,
    )  # fmt: skip
    for redactor in logging.getLogger("discord.gateway").filters:
        redactor.filter(record)
    shown = logging.Formatter().format(record)
    assert token not in shown and "'token': '<token>'" in shown, shown
    assert "cdn.discordapp.com" not in shown and shown.count("<attachment>") == 2, shown


@pytest.mark.parametrize("limits", [LimitsSettings(photos_per_minute=2)])
async def test_of_several_files_the_unread_and_the_non_photos_are_named(
    simcord_env: simcord.Env,
    alice: simcord.MemberActor,
    astronaut_jpeg: bytes,
    service: MoodLifter,
) -> None:
    """A PDF beside a selfie is said to be no photo (it was passed over in silence); photos
    beyond the limit are named in the "slow down" (it did not say which went unread), which
    is not said again to photos sent moments later."""
    await alice.send_dm("hi")  # opens the DM channel (answered with the help)
    dm = alice.user.dm_channel
    before = len(dm.history())
    files = [("me.jpg", astronaut_jpeg), ("cv.pdf", b"%PDF-1.4 a CV")]
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(dm.id, files))
    card, notice = dm.history()[before + 1 :]
    assert len(card.embeds) == 1
    assert notice.content == f"cv.pdf: {wording.NOT_A_PHOTO}"

    before = len(dm.history())
    three = [(f"p{n}.jpg", astronaut_jpeg) for n in range(1, 4)]
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(dm.id, three))
    card, refusal = dm.history()[before + 1 :]  # the limit of 2 a minute: one more photo read
    assert len(card.embeds) == 1
    assert refusal.content.startswith("p2.jpg, p3.jpg: Whoa, that's a lot of photos!")

    before = len(dm.history())  # the minute's two photos are read: none of these six is
    six = [(f"q{n}.jpg", astronaut_jpeg) for n in range(1, 7)]
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(dm.id, six))
    assert len(dm.history()) == before + 1  # told moments ago: unanswered
    later = time.monotonic() + SLOW_DOWN_SAID_FOR
    service._told_photos_slow_down.clock = lambda: later
    before = len(dm.history())
    await alice.send_dm("", attachments=simcord_env.backend.store_attachments(dm.id, six))
    (refusal,) = dm.history()[before + 1 :]
    assert refusal.content.startswith("q1.jpg, q2.jpg, q3.jpg and 3 more: Whoa")
