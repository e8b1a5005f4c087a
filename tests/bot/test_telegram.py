"""The Telegram bot end to end: the real Application, polling a fake Bot API on 127.0.0.1.

Nothing is mocked between the fake Telegram server and the SQLite file: python-telegram-bot
polls ``getUpdates`` over HTTP, downloads the photo over HTTP, and the real core reads the face
with the real detector and model, picks a track from the real catalog, and stores the delivery.
Tests act as users (:class:`FakeTelegramAPI`) and assert on what the users would see.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from bot import telegram as telegram_module
from bot import telegram_render as tr
from bot import wording
from bot.telegram import (
    COMMANDS,
    MoodApplication,
    UploadedPhotos,
    build_application,
    polling,
    send,
)
from core.config import (
    LimitsSettings,
    Secret,
    Settings,
    TelegramSettings,
)
from core.service import (
    CHAT_HINT,
    HELP_SEND,
    KEPT,
    NEED_SELFIE,
    NO_FACE,
    NO_READING,
    NOT_RATABLE,
    NOTHING_TO_FORGET,
    WELCOME,
    MoodLifter,
)
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import ApiCall, FakeTelegramAPI, group_chat, private_chat, shown, user

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
MAX_IMAGE_BYTES = 2_000_000
WAIT = 120.0  # seconds; face detection and inference share the CPU with a training run
TRACK_URL = re.compile(r"^https://open\.spotify\.com/track/\w+$")


# --- fixtures ----------------------------------------------------------------------------------


def _jpeg(array: Any, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path) -> Settings:
    """Real settings: a SQLite file in tmp_path, the labelled catalog from the shared data."""
    return service_settings(
        tmp_path, music_dir, LimitsSettings(photos_per_minute=100, max_image_bytes=MAX_IMAGE_BYTES)
    )


@pytest.fixture
def alice() -> dict[str, Any]:
    return user(1001, "Alice", username="alice")


@pytest.fixture
def bob() -> dict[str, Any]:
    return user(1002, "Bob")


# --- helpers -----------------------------------------------------------------------------------


def track_url(call: ApiCall) -> str:
    """The Spotify link under a card."""
    (url,) = [button["url"] for button in call.buttons if "url" in button]
    assert TRACK_URL.match(url), url
    return url


async def forget_confirmed(fake: FakeTelegramAPI, who: dict[str, Any], replies_before: int) -> None:
    """``who`` sends /forget and presses its "Yes" (``replies_before``: their replies so far)."""
    fake.send_command(who, "/forget")
    confirm = (await fake.wait_for_replies(who["id"], replies_before + 1, within=WAIT))[-1]
    fake.press_button(who, confirm, confirm.buttons[0]["callback_data"])
    await fake.wait_for("editMessageText", within=WAIT)


def assert_card(call: ApiCall, *, replying_to: int) -> None:
    """A song card as the user sees it: album art or drawn card, caption, two buttons."""
    assert call.method == "sendPhoto", (call.method, call.text)
    if "photo" in call.files:  # uploaded art or a drawn card
        with Image.open(io.BytesIO(call.files["photo"])) as art:
            assert art.format in ("PNG", "JPEG")
    else:  # album art by URL, or the file_id of a picture uploaded before (the fake checks it)
        assert str(call.params["photo"]).startswith("https://") or call.params["photo"]
    assert call.reply_to == replying_to
    assert call.params["parse_mode"] == "HTML"
    caption = shown(call)
    assert "by " in caption
    assert "Song mood:" in caption
    labels = [button["text"] for button in call.buttons]
    assert labels == [wording.OPEN_IN_SPOTIFY, wording.ANOTHER_SONG, wording.LIKE, wording.DISLIKE]
    track = track_url(call).rsplit("/", 1)[1]
    assert [b.get("callback_data") for b in call.buttons] == [
        None,
        "more",
        f"rate:up:{track}",
        f"rate:down:{track}",
    ]


def rows(db_path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the bot's SQLite file directly, as an operator would."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute(sql, params).fetchall()


def store_id(db_path: Path, telegram_id: int) -> int | None:
    found = rows(
        db_path,
        "SELECT id FROM users WHERE platform = 'telegram' AND platform_user_id = ?",
        str(telegram_id),
    )
    return found[0][0] if found else None


def counts(db_path: Path, user_id: int) -> dict[str, int]:
    """Rows per table for one store user."""
    return {
        table: rows(db_path, f"SELECT count(*) FROM {table} WHERE {column} = ?", user_id)[0][0]
        for table, column in (
            ("users", "id"),
            ("deliveries", "user_id"),
            ("detections", "user_id"),
            ("ratings", "user_id"),
        )
    }


# --- a selfie and what follows -----------------------------------------------------------------


async def test_commands_are_registered_at_start(
    app: MoodApplication, fake: FakeTelegramAPI
) -> None:
    await fake.wait_for("setMyCommands")
    assert [c["command"] for c in fake.commands] == [c.command for c in COMMANDS]


async def test_start_and_help_explain_the_bot(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    start = fake.send_command(alice, "/start")
    help_ = fake.send_command(alice, "/help")
    first, second = await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    by_reply = {first.reply_to: first, second.reply_to: second}
    welcome = shown(by_reply[start["message_id"]])
    assert "selfie" in welcome.lower() and "never save your photo" in welcome.lower()
    commands = shown(by_reply[help_["message_id"]])
    for command in ("/more", "/mood", "/mode", "/forget"):
        assert command in commands
    assert "never" in commands.lower()  # the privacy promise


async def test_selfie_gets_a_song_card_in_reply(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    message = fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)

    assert_card(card, replying_to=message["message_id"])
    caption = shown(card)
    assert re.search(rf"\b({'|'.join(EMOTIONS)}) \d{{1,3}} %", caption), caption
    assert "Why:" in caption
    # The largest size was downloaded (it is under the limit), from memory, once.
    largest = message["photo"][-1]
    downloads = fake.calls_to("GET file")
    assert len(downloads) == 1
    got = fake.calls_to("getFile")[0]
    assert got.params["file_id"] == largest["file_id"]
    # One delivery and one detection were stored for Alice.
    assert counts(db_path, store_id(db_path, alice["id"])) == {
        "users": 1,
        "deliveries": 1,
        "detections": 1,
        "ratings": 0,
    }


@pytest.mark.parametrize("chat_action_after", [3600.0])
async def test_an_answer_ready_in_time_shows_no_chat_action(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert fake.calls_to("sendChatAction") == []  # one Bot API call fewer per selfie


@pytest.mark.parametrize("chat_action_after", [0.2])
async def test_a_slow_answer_shows_sending_a_photo_first(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.stall_next("GET file", 1.0)  # the download alone outlasts the delay
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    actions = fake.calls_to("sendChatAction", chat_id=alice["id"])
    assert actions and actions[0].params["action"] == "upload_photo"
    assert actions[0].at <= card.at


@pytest.mark.parametrize("chat_action_after", [0.2])
async def test_in_a_forum_topic_answers_go_to_that_topic(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Also "sending a photo…", and also when the selfie is deleted before the card comes
    (Telegram then places a reply by its topic id alone)."""
    forum = {**group_chat(-1011, "Club"), "is_forum": True}
    topic = {"is_topic_message": True, "message_thread_id": 77}
    fake.stall_next("GET file", 1.0)
    photo = fake.send_photo(alice, selfie, forum, caption="@MoodLifterBot", **topic)
    (card,) = await fake.wait_for_replies(forum["id"], 1, within=WAIT)
    assert card.params["message_thread_id"] == "77" and card.reply_to == photo["message_id"]
    actions = fake.calls_to("sendChatAction", chat_id=forum["id"])
    assert actions and all(a.params["message_thread_id"] == "77" for a in actions)

    fake.send_command(alice, "/more@MoodLifterBot", forum, **topic)
    second = (await fake.wait_for_replies(forum["id"], 2, within=WAIT))[-1]
    assert second.params["message_thread_id"] == "77"


async def test_image_sent_as_a_file_is_read_too(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "PNG")
    message = fake.send_document(
        alice, buffer.getvalue(), mime_type="image/png", file_name="me.png"
    )
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert_card(card, replying_to=message["message_id"])


async def test_more_and_mood_sent_right_after_a_selfie_answer_for_it(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Sent before the selfie's card came back, /more and /mood wait for that selfie instead
    of asking for one, and their answers come after its card."""
    photo = fake.send_photo(alice, selfie)
    more = fake.send_command(alice, "/more")
    mood = fake.send_command(alice, "/mood")
    replies = await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert_card(replies[0], replying_to=photo["message_id"])
    by_reply = {call.reply_to: call for call in replies[1:]}
    assert_card(by_reply[more["message_id"]], replying_to=more["message_id"])
    assert "Send me a selfie" not in shown(by_reply[mood["message_id"]])
    assert "%" in shown(by_reply[mood["message_id"]])


async def test_forget_and_history_sent_right_after_a_selfie_include_it(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """/history and /forget sent while the selfie is still being read wait for it: the history
    lists its song, and /forget asks to delete it (it is not "nothing stored"), so no reading
    can land after the deletion and store the user again."""
    photo = fake.send_photo(alice, selfie)
    history = fake.send_command(alice, "/history")
    forget = fake.send_command(alice, "/forget")
    replies = await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert_card(replies[0], replying_to=photo["message_id"])
    by_reply = {call.reply_to: call for call in replies[1:]}
    title = shown(replies[0]).splitlines()[0].removeprefix("🎵").strip()
    assert f"1. {title} by " in shown(by_reply[history["message_id"]])
    confirm = by_reply[forget["message_id"]]
    assert shown(confirm) != NOTHING_TO_FORGET and len(confirm.buttons) == 2
    alice_id = store_id(db_path, alice["id"])
    assert alice_id is not None and counts(db_path, alice_id)["deliveries"] == 1


async def test_more_twice_and_the_button_never_repeat(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    first_more = fake.send_command(alice, "/more")
    await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    fake.send_command(alice, "/more")
    await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    query_id = fake.press_button(alice, card, "more")
    replies = await fake.wait_for_replies(alice["id"], 4, within=WAIT)

    assert_card(replies[1], replying_to=first_more["message_id"])
    urls = [track_url(call) for call in replies]
    assert len(set(urls)) == 4, urls
    # The button press was acknowledged, and the new card replies to the card pressed.
    assert query_id in fake.answered_callbacks
    assert replies[3].reply_to == fake.sent_message(card)["message_id"]
    # A plain /more says which mood it continues and carries no new emotion reading.
    assert "Song mood:" in shown(replies[1])
    assert "Emotion" not in shown(replies[1]) and "another" in shown(replies[1])
    assert "you look" not in shown(replies[3])  # the button's card too


async def test_words_asking_for_another_song_get_one(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """ "more", "another song please" typed instead of /more are answered as /more; other
    words that merely contain them are not."""
    fake.send_text(alice, "another song please")
    (ask_first,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert shown(ask_first).startswith(NEED_SELFIE)
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    asked = fake.send_text(alice, "More!")
    song = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    assert_card(song, replying_to=asked["message_id"])
    fake.send_text(alice, "I want more")
    hint = (await fake.wait_for_replies(alice["id"], 4, within=WAIT))[-1]
    assert shown(hint) == f"{HELP_SEND}\n{CHAT_HINT}"


async def test_another_song_pressed_while_a_selfie_is_read_still_comes_when_late(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """The "Another song" button waits for a selfie on its way; answered past Telegram's
    window for a button press, the acknowledgement is refused, but the song is still sent."""
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    fake.callback_answer_window = 0.5
    fake.stall_next("GET file", 1.5)  # the next selfie's download is slow
    fake.send_photo(alice, selfie)
    await fake.wait_for("getFile", within=WAIT)
    query_id = fake.press_button(alice, card, "more")
    replies = await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert [call.method for call in replies] == ["sendPhoto"] * 3  # two selfies' cards, a song
    assert replies[2].reply_to == fake.sent_message(card)["message_id"]
    assert query_id not in fake.answered_callbacks  # refused: too late
    assert all(shown(call) != wording.SOMETHING_WENT_WRONG for call in fake.replies(alice["id"]))


async def test_mood_shows_all_seven_probabilities(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    ask = fake.send_command(alice, "/mood")
    summary = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]

    assert summary.reply_to == ask["message_id"]
    text = shown(summary)
    for emotion in EMOTIONS:
        assert emotion in text
    assert "Last time you looked" in text and "Read just now." in text
    percents = [int(p) for p in re.findall(r"(\d{1,3}) %", text)]
    assert percents[0] == percents[1]  # the headline's figure is the first row's
    assert sum(percents[1:]) in (99, 100)  # the seven rows add up (99 only in a near tie)
    if summary.method == "sendPhoto":  # the chart, when core draws one
        with Image.open(io.BytesIO(summary.files["photo"])) as chart:
            assert chart.format == "PNG"


async def test_before_any_selfie_more_and_mood_ask_for_one(
    app: MoodApplication, fake: FakeTelegramAPI, bob: dict[str, Any]
) -> None:
    fake.send_command(bob, "/more")
    fake.send_command(bob, "/mood")
    replies = await fake.wait_for_replies(bob["id"], 2, within=WAIT)
    assert all(call.method == "sendMessage" for call in replies)
    assert all("selfie" in shown(call).lower() for call in replies)


async def test_mode_lift_or_match(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    fake.send_command(alice, "/mode match")
    (answer,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert "match" in shown(answer)
    fake.send_command(alice, "/mode banana; DROP TABLE users")
    bad = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    assert "lift" in shown(bad) and "match" in shown(bad)


async def test_forget_after_confirmation_removes_every_row(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    alice_id = store_id(db_path, alice["id"])
    assert alice_id is not None and counts(db_path, alice_id)["deliveries"] == 1

    fake.send_command(alice, "/forget")
    confirm = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    yes, keep = confirm.buttons
    assert (yes["text"], keep["text"]) == (wording.FORGET_YES, wording.FORGET_NO)
    assert counts(db_path, alice_id)["deliveries"] == 1  # nothing deleted before confirming

    # Bob cannot press Alice's button (he would see it in a group, or forge the data).
    bobs_press = fake.press_button(bob, confirm, yes["callback_data"])
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == bobs_press, within=WAIT)
    assert fake.answered_callbacks[bobs_press]["text"] == wording.FORGET_NOT_YOURS
    assert counts(db_path, alice_id)["deliveries"] == 1

    alices_press = fake.press_button(alice, confirm, yes["callback_data"])
    (edit,) = await fake.wait_for("editMessageText", within=WAIT)
    assert alices_press in fake.answered_callbacks
    assert "forgotten" in shown(edit).lower()
    assert not edit.buttons  # the confirmation buttons are gone
    assert counts(db_path, alice_id) == {
        "users": 0,
        "deliveries": 0,
        "detections": 0,
        "ratings": 0,
    }
    assert store_id(db_path, alice["id"]) is None

    fake.send_command(alice, "/mood")
    after = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    assert "selfie" in shown(after).lower()

    # Nothing stored now: no "are you sure?", which would suggest there is something.
    fake.send_command(alice, "/forget")
    again = (await fake.wait_for_replies(alice["id"], 4, within=WAIT))[-1]
    assert shown(again) == NOTHING_TO_FORGET and not again.buttons


async def test_forget_can_be_called_off(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    fake.send_command(alice, "/forget")
    confirm = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    fake.press_button(alice, confirm, confirm.buttons[1]["callback_data"])
    (edit,) = await fake.wait_for("editMessageText", within=WAIT)
    assert shown(edit) == KEPT
    assert counts(db_path, store_id(db_path, alice["id"]))["deliveries"] == 1

    # Two copies of the question: "Yes" on one, then "keep" on the other keeps nothing.
    fake.send_command(alice, "/forget")
    fake.send_command(alice, "/forget")
    first, second = (await fake.wait_for_replies(alice["id"], 4, within=WAIT))[-2:]
    fake.press_button(alice, first, first.buttons[0]["callback_data"])
    await fake.wait_for("editMessageText", count=2, within=WAIT)  # "Done — I've forgotten…"
    fake.press_button(alice, second, second.buttons[1]["callback_data"])
    edits = await fake.wait_for(
        lambda c: c.method == "editMessageText" and "stored" in shown(c), within=WAIT
    )
    assert shown(edits[-1]) == NOTHING_TO_FORGET
    assert store_id(db_path, alice["id"]) is None


async def test_forget_answered_late_still_shows_its_outcome_and_no_apology(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """Pressing "Yes, forget me" while a selfie is read waits for that reading, past Telegram's
    window for answering a press: the refused acknowledgement is no error, the question still
    turns into "Done"."""
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    fake.send_command(alice, "/forget")
    confirm = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    fake.callback_answer_window = 0.5
    fake.stall_next("GET file", 1.5)  # the next selfie's download is slow
    fake.send_photo(alice, selfie)
    await fake.wait_for("getFile", within=WAIT)
    query_id = fake.press_button(alice, confirm, confirm.buttons[0]["callback_data"])
    (edit,) = await fake.wait_for("editMessageText", within=WAIT)
    assert "forgotten" in shown(edit).lower() and not edit.buttons
    await fake.wait_until_delivered(within=WAIT)
    assert query_id not in fake.answered_callbacks  # refused: too late
    assert all(shown(call) != wording.SOMETHING_WENT_WRONG for call in fake.replies(alice["id"]))
    assert store_id(db_path, alice["id"]) is None


async def test_forget_answered_on_a_question_telegram_no_longer_shows(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """A press on a question Telegram will not let the bot edit (deleted since: the edit is
    refused; very old: the press carries an "inaccessible" message, date 0) gets its outcome
    as a new message instead of an apology."""
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    fake.send_command(alice, "/forget")
    confirm = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    yes, keep = (button["callback_data"] for button in confirm.buttons)

    fake.fail_next(
        "editMessageText", status=400, description="Bad Request: message to edit not found"
    )
    fake.press_button(alice, confirm, keep)
    kept = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    assert (kept.method, shown(kept)) == ("sendMessage", KEPT)
    assert store_id(db_path, alice["id"]) is not None

    question = fake.sent_message(confirm)
    inaccessible = {"chat": question["chat"], "message_id": question["message_id"], "date": 0}
    fake.press_button(alice, inaccessible, yes)
    outcome = (await fake.wait_for_replies(alice["id"], 4, within=WAIT))[-1]
    assert outcome.method == "sendMessage"
    assert "forgotten" in shown(outcome).lower()
    assert store_id(db_path, alice["id"]) is None
    assert len(fake.calls_to("editMessageText")) == 1  # only the refused one was tried


# --- ratings and history -----------------------------------------------------------------------


def history_lines(call: ApiCall) -> list[str]:
    """The numbered song lines of a /history message."""
    return [line for line in shown(call).splitlines() if re.match(r"^\d+\. ", line)]


async def test_rating_a_card_right_after_asking_it_for_another_song_counts(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """Only a second press of the *same* button is a double tap: 👍 pressed while the card's
    "Another song" is still on its way is a rating."""
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    track = track_url(card).rsplit("/", 1)[1]
    like = card.buttons[2]["callback_data"]
    fake.stall_next("sendPhoto", 1.0)  # the next song takes a while to send
    fake.press_button(alice, card, "more")
    liked = fake.press_button(alice, card, like)
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == liked, within=WAIT)
    assert "👍" in fake.answered_callbacks[liked]["text"]
    assert rows(db_path, "SELECT track_id, value FROM ratings") == [(track, 1)]
    await fake.wait_for_replies(alice["id"], 2, within=WAIT)


async def test_rate_see_it_in_history_change_it_and_forget_it(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    track = track_url(card).rsplit("/", 1)[1]
    like, dislike = (b["callback_data"] for b in card.buttons[2:])

    liked = fake.press_button(alice, card, like)
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == liked, within=WAIT)
    toast = fake.answered_callbacks[liked]
    assert "👍" in toast["text"] and toast.get("show_alert") in (None, "false")  # a quiet toast
    alice_id = store_id(db_path, alice["id"])
    assert rows(db_path, "SELECT track_id, value FROM ratings") == [(track, 1)]

    fake.send_command(alice, "/history")
    listing = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    (line,) = history_lines(listing)
    title = shown(card).splitlines()[0].removeprefix("🎵 ")
    assert line.startswith(f"1. {title} by ")
    assert "👍" in line and "→" in line
    assert f'href="https://open.spotify.com/track/{track}"' in listing.text

    disliked = fake.press_button(alice, card, dislike)  # a change of mind
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == disliked, within=WAIT)
    assert "👎" in fake.answered_callbacks[disliked]["text"]
    assert rows(db_path, "SELECT track_id, value FROM ratings") == [(track, -1)]
    fake.send_command(alice, "/history 50")
    listing = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    (line,) = history_lines(listing)
    assert "👎" in line and "👍" not in line

    # Bob sees Alice's card (a group, or forged data): his press rates nothing for anyone.
    bobs = fake.press_button(bob, card, like)
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == bobs, within=WAIT)
    refused = fake.answered_callbacks[bobs]
    assert refused["text"] == NOT_RATABLE and refused["show_alert"] == "true"  # read to the end
    assert rows(db_path, "SELECT user_id, value FROM ratings") == [(alice_id, -1)]

    await forget_confirmed(fake, alice, replies_before=3)
    assert rows(db_path, "SELECT count(*) FROM ratings") == [(0,)]
    fake.send_command(alice, "/history")
    after = (await fake.wait_for_replies(alice["id"], 5, within=WAIT))[-1]
    assert not history_lines(after) and "selfie" in shown(after)


async def test_a_reaction_on_a_card_rates_its_song_like_its_buttons(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """👍 (or ❤) set on a card is a like, 👎 a dislike, silently; a reaction on another
    message, or by someone the song was not sent to, rates nothing."""
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    track = track_url(card).rsplit("/", 1)[1]
    message = fake.sent_message(card)

    async def settled() -> list[tuple[Any, ...]]:
        await fake.wait_until_delivered(within=WAIT)
        await asyncio.sleep(0.3)  # the rating's write after its delivery
        return rows(db_path, "SELECT track_id, value FROM ratings")

    fake.react(alice, message, "❤")
    assert await settled() == [(track, 1)]
    fake.react(alice, message, "👎", was="❤")
    assert await settled() == [(track, -1)]
    fake.react(alice, message, "🤔", was="👎")  # neither: the rating stays
    fake.react(bob, message, "👍")  # not his song
    asked = fake.send_command(alice, "/mood")
    await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    fake.react(alice, {"chat": message["chat"], "message_id": asked["message_id"]}, "👍")
    assert await settled() == [(track, -1)]
    assert len(fake.replies(alice["id"])) == 2  # reactions are answered by nothing

    # /forget drops the bot's memory of which of its messages were her cards, too.
    assert any(owner == alice["id"] for owner, _ in app.bot_data["card_messages"].values())
    await forget_confirmed(fake, alice, replies_before=2)
    assert not any(owner == alice["id"] for owner, _ in app.bot_data["card_messages"].values())
    fake.react(alice, message, "👍", was="🤔")
    assert await settled() == []


async def test_history_count_junk_and_the_cap_get_friendly_replies(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_photo(alice, selfie)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    fake.send_command(alice, "/history lots")
    junk = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    assert "/history 50" in shown(junk)
    fake.send_command(alice, "/history 100000")
    capped = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    # One song of the 100,000 asked for: all there is, and no word of a cap nothing hit.
    assert len(history_lines(capped)) == 1 and "at most 100" not in shown(capped)


# --- not a photo, too big, forged --------------------------------------------------------------


async def test_things_that_are_not_photos_get_a_friendly_hint(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    fake.send_document(alice, b"%PDF-1.4\n", mime_type="application/pdf", file_name="cv.pdf")
    fake.send_sticker(alice)
    fake.send_voice(alice)
    fake.send_video(alice)
    fake.send_animation(alice)
    replies = await fake.wait_for_replies(alice["id"], 5, within=WAIT)
    assert [shown(call) for call in replies] == [wording.NOT_A_PHOTO] * 5
    assert not fake.calls_to("getFile")  # nothing was downloaded


async def test_locations_polls_and_dice_get_the_same_hint(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    fake.send_message(fake.new_message(alice, location={"latitude": 52.5, "longitude": 13.4}))
    fake.send_message(fake.new_message(alice, dice={"emoji": "🎲", "value": 4}))
    fake.send_message(
        fake.new_message(alice, contact={"phone_number": "+100", "first_name": "Mum"})
    )
    replies = await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert [shown(call) for call in replies] == [wording.NOT_A_PHOTO] * 3


async def test_broken_image_and_faceless_photo_get_clear_replies(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_document(alice, b"this is text, renamed", mime_type="image/jpeg", file_name="me.jpg")
    fake.send_document(
        alice, selfie[: len(selfie) // 3], mime_type="image/jpeg", file_name="cut.jpg"
    )
    noise = np.random.default_rng(7).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    fake.send_photo(alice, _jpeg(noise))
    replies = await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert all(call.method == "sendMessage" for call in replies), [c.text for c in replies]
    assert all(shown(call) and shown(call) != wording.SOMETHING_WENT_WRONG for call in replies)


async def test_oversize_photos_are_refused_before_download(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.send_document(
        alice,
        b"\xff\xd8" + b"\x00" * 100,
        mime_type="image/jpeg",
        file_name="huge.jpg",
        declared_size=MAX_IMAGE_BYTES + 1,
    )
    big = fake.register_file(selfie, declared_size=MAX_IMAGE_BYTES * 3)
    only_huge = [
        {
            "file_id": big.file_id,
            "file_unique_id": big.file_unique_id,
            "width": 4000,
            "height": 3000,
            "file_size": MAX_IMAGE_BYTES * 3,
        }
    ]
    fake.send_photo(alice, selfie, sizes=only_huge)
    replies = await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    assert [shown(call) for call in replies] == [wording.too_big(MAX_IMAGE_BYTES)] * 2
    assert not fake.calls_to("getFile") and not fake.calls_to("GET file")


async def test_photo_ladder_uses_the_largest_size_under_the_limit(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    sizes = fake.photo_sizes(selfie)
    sizes[-1]["file_size"] = MAX_IMAGE_BYTES + 1  # the original is "too big"
    fake.send_photo(alice, selfie, sizes=sizes)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert fake.calls_to("getFile")[0].params["file_id"] == sizes[-2]["file_id"]


async def test_unknown_commands_and_chatter_point_to_help(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    fake.send_command(alice, "/dance")
    fake.send_text(alice, "hello? مرحبا 👋")
    replies = await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    by_reply = {call.reply_to: shown(call) for call in replies}
    (unknown,) = [text for text in by_reply.values() if text.startswith("I don't know /dance.")]
    (chatter,) = [text for text in by_reply.values() if text != unknown]
    assert "/more" in unknown  # the whole help
    assert chatter == f"{HELP_SEND}\n{CHAT_HINT}"  # a short hint
    fake.send_command(alice, "/more@SomeOtherBot")  # in private: not ours, yet no unknown one
    reply = (await fake.wait_for_replies(alice["id"], 3, within=WAIT))[-1]
    expected = wording.COMMAND_FOR_ANOTHER_BOT.format(command="/more", bot="SomeOtherBot")
    assert shown(reply).startswith(expected)


async def test_forged_or_stale_callback_data_does_nothing(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    fake.send_photo(alice, selfie)
    (card,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    alice_id = store_id(db_path, alice["id"])
    queries = [
        fake.press_button(bob, card, f"forget:yes:{alice['id']}"),
        fake.press_button(bob, card, "forget:yes:1001 OR 1=1"),
        fake.press_button(bob, card, "delete_everything"),
    ]
    await fake.wait_for("answerCallbackQuery", count=3, within=WAIT)
    answers = [fake.answered_callbacks[q]["text"] for q in queries]
    assert answers == [wording.FORGET_NOT_YOURS, wording.BUTTON_EXPIRED, wording.BUTTON_EXPIRED]
    assert counts(db_path, alice_id) == {
        "users": 1,
        "deliveries": 1,
        "detections": 1,
        "ratings": 0,
    }
    assert not fake.calls_to("editMessageText")


# --- group chats -------------------------------------------------------------------------------


async def test_group_chat_answers_only_what_is_addressed_to_the_bot(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
) -> None:
    group = group_chat()
    fake.send_photo(alice, selfie, group)  # holiday snaps among friends: not for the bot
    fake.send_command(bob, "/more@SomeOtherBot", group)
    fake.send_command(bob, "/dance", group)  # a bare unknown command may be another bot's
    mentioned = fake.send_photo(alice, selfie, group, caption="what song, @MoodLifterBot?")
    (card,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    assert_card(card, replying_to=mentioned["message_id"])

    more = fake.send_command(alice, "/more@MoodLifterBot", group)
    replying = fake.send_photo(bob, selfie, group, reply_to=fake.sent_message(card))
    unknown = fake.send_command(bob, "/dance@MoodLifterBot", group)
    replies = await fake.wait_for_replies(group["id"], 4, within=WAIT)
    by_reply = {call.reply_to: call for call in replies[1:]}
    assert_card(by_reply[more["message_id"]], replying_to=more["message_id"])
    assert_card(by_reply[replying["message_id"]], replying_to=replying["message_id"])
    assert "/more" in shown(by_reply[unknown["message_id"]])

    await fake.wait_until_delivered(within=WAIT)
    assert len(fake.replies(group["id"])) == 4  # nothing for the unaddressed messages
    assert fake.calls_to("getFile") and len(fake.calls_to("getFile")) == 2

    # Chatter under a card (words, a sticker) is for the group; a mention hears how to send a
    # selfie here and where the help is.
    under_card = fake.sent_message(card)
    fake.send_text(bob, "haha great song", group, reply_to=under_card)
    fake.send_sticker(bob, group, reply_to=under_card)
    asked = fake.send_text(bob, "@MoodLifterBot what do you do?", group)
    replies = await fake.wait_for_replies(group["id"], 5, within=WAIT)
    assert replies[4].reply_to == asked["message_id"]
    assert (
        shown(replies[4])
        == f"{wording.TELEGRAM_GROUP_HOW_TO_SEND.format(bot='MoodLifterBot')}\n{CHAT_HINT}"
    )
    await fake.wait_until_delivered(within=WAIT)
    assert len(fake.replies(group["id"])) == 5


async def test_messages_sent_as_a_chat_are_asked_to_go_private(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    db_path: Path,
) -> None:
    """An anonymous admin's messages carry Telegram's placeholder user, the same for everyone
    who posts so: they must not share one profile (one person's mood shown to another)."""
    group = group_chat()
    placeholder = user(1087968824, "Group")  # GroupAnonymousBot
    as_group = {"sender_chat": group}
    fake.send_message(fake.new_message(placeholder, group, **as_group, text="hello all"))
    asked = fake.send_message(
        fake.new_message(
            placeholder,
            group,
            **as_group,
            text="/mood@MoodLifterBot",
            entities=[{"type": "bot_command", "offset": 0, "length": 19}],
        )
    )
    (reply,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    assert reply.reply_to == asked["message_id"]
    assert shown(reply) == wording.WRITE_IN_PRIVATE
    # A bare command of ours (how the command menu sends it with one bot in the group) is
    # asked the same; another bot's bare command is not ours to answer.
    for text in ("/roll", "/more"):
        entities = [{"type": "bot_command", "offset": 0, "length": len(text)}]
        fake.send_message(
            fake.new_message(placeholder, group, **as_group, text=text, entities=entities)
        )
    reply = (await fake.wait_for_replies(group["id"], 2, within=WAIT))[-1]
    assert shown(reply) == wording.WRITE_IN_PRIVATE
    herself = fake.send_photo(alice, selfie, group, caption="@MoodLifterBot")  # served
    card = (await fake.wait_for_replies(group["id"], 3, within=WAIT))[-1]
    assert_card(card, replying_to=herself["message_id"])
    await fake.wait_until_delivered(within=WAIT)
    assert len(fake.replies(group["id"])) == 3  # "hello all" and /roll got nothing
    assert rows(db_path, "SELECT platform_user_id FROM users") == [(str(alice["id"]),)]


async def test_in_a_group_readings_and_the_song_list_are_answered_in_private(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
) -> None:
    """What the bot read on a face is not for the whole group: /mood and /history go to the
    asker's private chat, and the group hears only that (or how to open that chat)."""
    group = group_chat(-1010, "Crew")
    fake.send_photo(alice, selfie, group, caption="@MoodLifterBot")
    (card,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    # Bob, no selfie yet, presses "Another song" under it: an alert only he sees, which says
    # how a selfie reaches the bot here (a plain one would go unseen), short enough to show.
    pressed = fake.press_button(bob, card, "more")
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == pressed, within=WAIT)
    alert = fake.answered_callbacks[pressed]
    hint = wording.TELEGRAM_GROUP_SELFIE_HINT.format(bot="MoodLifterBot")
    assert alert["text"] == f"{NEED_SELFIE}\n{hint}" and alert["show_alert"] == "true"
    assert len(alert["text"]) <= 200
    for command in ("/mood@MoodLifterBot", "/history@MoodLifterBot"):
        asked = fake.send_command(alice, command, group)
        told = (
            await fake.wait_for_replies(
                group["id"], 1 + len(fake.replies(group["id"])), within=WAIT
            )
        )[-1]
        assert told.reply_to == asked["message_id"] and shown(told) == wording.SENT_IN_PRIVATE
    private = await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    assert "happy" in shown(private[0]).lower()  # the reading, with its chart
    assert "open.spotify.com/track/" in str(private[1].params)  # the song list

    # Bob has no reading yet: nothing personal in that, so the group hears it.
    asked = fake.send_command(bob, "/mood@MoodLifterBot", group)
    told = (await fake.wait_for_replies(group["id"], 4, within=WAIT))[-1]
    how = wording.TELEGRAM_GROUP_HOW_TO_SEND.format(bot="MoodLifterBot")
    assert told.reply_to == asked["message_id"] and shown(told) == f"{NO_READING}\n{how}"

    # Bob never opened a chat with the bot: Telegram refuses its first private message.
    fake.send_photo(bob, selfie, group, caption="@MoodLifterBot")
    await fake.wait_for_replies(group["id"], 5, within=WAIT)
    fake.fail_next(
        "sendMessage",
        status=403,
        description="Forbidden: bot can't initiate conversation with a user",
    )
    asked = fake.send_command(bob, "/history@MoodLifterBot 20", group)
    told = (await fake.wait_for_replies(group["id"], 6, within=WAIT))[-1]
    assert told.reply_to == asked["message_id"]
    link = "https://t.me/MoodLifterBot?start=history_20"  # the count travels with it
    assert shown(told) == wording.OPEN_PRIVATE_CHAT.format(link=link)
    # The link opens the private chat with "/start history_20": the list comes at once.
    fake.send_command(bob, "/start history_20")
    (listing,) = await fake.wait_for(
        lambda c: c.params.get("chat_id") == str(bob["id"]) and "_failed_with" not in c.params,
        within=WAIT,
    )
    assert "open.spotify.com/track/" in str(listing.params)

    # In a group, the help says how to send a photo there.
    fake.send_command(bob, "/help@MoodLifterBot", group)
    helped = (await fake.wait_for_replies(group["id"], 7, within=WAIT))[-1]
    assert shown(helped).startswith(how)
    # So do the welcome and every "send me a selfie first": a plain selfie here goes unseen.
    carol = user(5402, "Carol")
    for n, command in enumerate(("/start", "/more", "/mood", "/history"), start=8):
        fake.send_command(carol, f"{command}@MoodLifterBot", group)
        asked = (await fake.wait_for_replies(group["id"], n, within=WAIT))[-1]
        assert "selfie" in shown(asked) and shown(asked).endswith(how), command
    fake.send_command(carol, "/more")  # in private, the plain ask
    (private,) = await fake.wait_for_replies(carol["id"], 1, within=WAIT)
    assert "@MoodLifterBot" not in shown(private)


async def test_in_a_group_a_card_a_button_brought_says_whose_and_a_double_tap_is_one_press(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    bob: dict[str, Any],
    selfie: bytes,
) -> None:
    group = group_chat(-1012, "Gang")
    hers = fake.send_photo(alice, selfie, group, caption="@MoodLifterBot")
    fake.send_photo(bob, selfie, group, caption="@MoodLifterBot")
    cards = await fake.wait_for_replies(group["id"], 2, within=WAIT)
    (alices_card,) = [card for card in cards if card.reply_to == hers["message_id"]]
    another = alices_card.buttons[1]["callback_data"]
    taps = [fake.press_button(bob, alices_card, another) for _ in range(2)]  # a double tap
    third = (await fake.wait_for_replies(group["id"], 3, within=WAIT))[-1]
    assert third.reply_to == alices_card.params["_message_id"]
    assert shown(third).endswith(wording.FOR_WHOM.format(name=bob["first_name"]))
    await fake.wait_for(lambda c: c.params.get("callback_query_id") == taps[1], within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    assert len(fake.replies(group["id"])) == 3  # one song for the two taps
    assert set(taps) <= set(fake.answered_callbacks)  # both spinners stopped


async def test_in_a_group_every_photo_of_an_album_addressed_to_the_bot_is_read(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Telegram puts an album's caption on its first photo only: the others of an album that
    mentions the bot are for it too; an album that does not mention it is left alone."""
    group = group_chat(-1014, "Trip")
    first = fake.send_photo(alice, selfie, group, caption="@MoodLifterBot", media_group_id="246")
    second = fake.send_photo(alice, selfie, group, media_group_id="246")
    fake.send_photo(alice, selfie, group, caption="us at the lake", media_group_id="975")
    fake.send_photo(alice, selfie, group, media_group_id="975")
    await fake.wait_for_replies(group["id"], 2, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    cards = fake.replies(group["id"])
    assert sorted(card.reply_to for card in cards) == [first["message_id"], second["message_id"]]
    assert all(card.method == "sendPhoto" for card in cards)


async def test_group_photo_after_private_chat_goes_to_the_group(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    group = group_chat(-1009, "Band")
    # Any letter case; the mention's offset counts UTF-16 units past an emoji and RTL text.
    fake.send_photo(alice, selfie, group, caption="👋🏽 مرحبا @moodlifterbot")
    (card,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    assert card.chat_id == group["id"]
    assert not fake.replies(private_chat(alice)["id"])


# --- faults and privacy ------------------------------------------------------------------------


async def test_flood_control_and_server_errors_are_retried(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    fake.fail_next("getFile", status=502)
    fake.fail_next("sendPhoto", status=429, retry_after=1)
    fake.fail_next("sendPhoto", status=500)
    message = fake.send_photo(alice, selfie)
    sent = await fake.wait_for(
        lambda c: c.method == "sendPhoto" and "_message_id" in c.params, within=WAIT
    )
    assert_card(sent[0], replying_to=message["message_id"])
    failed = [c.params.get("_failed_with") for c in fake.calls_to("sendPhoto", "getFile")]
    assert failed.count(429) == 1 and failed.count(500) == 1 and failed.count(502) == 1
    assert len(fake.replies(alice["id"])) == 3  # two failed attempts, then the card, once


async def test_the_token_never_reaches_the_logs(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next("sendPhoto", status=500)
    fake.send_photo(alice, selfie)
    fake.send_command(alice, "/more")
    await fake.wait_for_replies(alice["id"], 3, within=WAIT)
    assert caplog.records
    secret_part = fake.token.split(":", 1)[1]
    assert secret_part not in caplog.text
    leaks = [(r.name, r.msg) for r in caplog.records if secret_part in str(r.args)]
    assert not leaks, leaks


async def test_stopping_finishes_the_work_in_flight(
    service: MoodLifter,
    settings: Settings,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
) -> None:
    """What SIGTERM does through the runtime: stop fetching, answer what was already taken."""
    telegram = TelegramSettings(
        token=Secret(fake.token), api_url=fake.base_url, file_url=fake.base_file_url
    )
    application = build_application(service, telegram, max_image_bytes=MAX_IMAGE_BYTES)
    async with polling(application, poll_timeout=1):
        message = fake.send_photo(alice, selfie)
        await fake.wait_for("GET file", within=WAIT)  # the photo is being read
    (card,) = fake.replies(alice["id"])  # answered before polling() returned
    assert_card(card, replying_to=message["message_id"])
    assert not application.running


async def test_a_picture_is_uploaded_once_then_sent_by_its_file_id(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    """The same card for two people: one upload, then Telegram's file_id; a stale id re-uploads."""
    for who in (alice, bob):
        fake.send_command(who, "/start")
        await fake.wait_for_replies(who["id"], 1, within=WAIT)
    art = _jpeg(skdata.coffee())
    card = tr.Outgoing(text="🎵 <b>Song</b>", photo=art)
    uploaded = UploadedPhotos()
    first = await send(app.bot, alice["id"], card, uploaded=uploaded)
    second = await send(app.bot, bob["id"], card, uploaded=uploaded)
    first_call, second_call = fake.calls_to("sendPhoto")
    assert first_call.files["photo"] == art
    assert "photo" not in second_call.files
    assert second_call.params["photo"] == first.photo[-1].file_id
    assert second.photo  # a photo message, as the upload was

    stale = UploadedPhotos()
    stale._ids[stale._key(art)] = "AgACAgIAAxkBAAIforgotten"  # e.g. ids of another bot token
    await send(app.bot, alice["id"], card, uploaded=stale)
    refused, uploaded_again = fake.calls_to("sendPhoto")[2:]
    assert refused.params["photo"] == "AgACAgIAAxkBAAIforgotten"
    assert uploaded_again.files["photo"] == art
    assert stale.get(art) not in (None, "AgACAgIAAxkBAAIforgotten")


async def test_the_photos_of_an_album_are_answered_in_the_order_sent(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    """Three selfies sent as one album come as three messages, read side by side; the first
    (a large photo, the slowest to read) is still answered first."""
    face = Image.fromarray(skdata.astronaut())
    large = _jpeg(np.asarray(face.resize((2048, 2048))))
    small = _jpeg(np.asarray(face.resize((256, 256))))
    album = [
        fake.send_photo(alice, image, media_group_id="555")["message_id"]
        for image in (large, small, small)
    ]
    replies = await fake.wait_for_replies(alice["id"], 3)
    assert [call.reply_to for call in replies] == album
    for call, message_id in zip(replies, album, strict=True):
        assert_card(call, replying_to=message_id)


async def test_an_album_says_no_face_once(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Three photos without a face in one album get the "no face" words once, not three times;
    its selfie still gets its card."""
    coffee = _jpeg(skdata.coffee())
    album = [
        fake.send_photo(alice, image, media_group_id="777")["message_id"]
        for image in (coffee, coffee, selfie, coffee)
    ]
    notice, card = await fake.wait_for_replies(alice["id"], 2)
    await fake.wait_until_delivered(within=WAIT)
    assert shown(notice) == NO_FACE and notice.reply_to == album[0]
    assert_card(card, replying_to=album[2])
    assert len(fake.replies(alice["id"])) == 2


async def test_in_a_group_album_photos_before_the_one_naming_the_bot_are_read_too(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Any photo of an album may carry the caption: the photos sent before the one that names
    the bot are read as well, in order; an album that never names it stays unanswered."""
    group = group_chat(-1015, "Hike")
    album = [
        fake.send_photo(alice, selfie, group, media_group_id="864")["message_id"],
        fake.send_photo(alice, selfie, group, caption="@MoodLifterBot", media_group_id="864")[
            "message_id"
        ],
        fake.send_photo(alice, selfie, group, media_group_id="864")["message_id"],
    ]
    fake.send_photo(alice, selfie, group, media_group_id="531")
    fake.send_photo(alice, selfie, group, media_group_id="531")
    cards = await fake.wait_for_replies(group["id"], 3, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    assert [card.reply_to for card in fake.replies(group["id"])] == album
    assert all(card.method == "sendPhoto" for card in cards)


async def test_a_card_forwarded_back_to_the_bot_is_not_read_as_a_selfie(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """Its picture is album art (or a drawn card), not the user: the bot says so; a photo
    forwarded from a person is read as usual."""
    mine = {"type": "user", "sender_user": fake.bot_user, "date": 1_700_000_000}
    fake.send_photo(alice, selfie, forward_origin=mine)
    (said,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    assert shown(said) == wording.OWN_CARD
    friends = {"type": "user", "sender_user": user(4242, "Dora"), "date": 1_700_000_000}
    fake.send_photo(alice, selfie, forward_origin=friends)
    card = (await fake.wait_for_replies(alice["id"], 2, within=WAIT))[-1]
    assert card.method == "sendPhoto" and card.buttons


async def test_added_to_a_group_it_says_how_a_selfie_reaches_it_there(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    """Once, when added (not when promoted later): in a group the bot sees only what is
    addressed to it, so a plain selfie there would go unanswered."""
    group = group_chat(-1019, "New friends")
    fake.add_bot_to(group, alice)
    (hello,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    assert shown(hello).startswith(wording.GROUP_HELLO)
    assert "@MoodLifterBot" in shown(hello)
    other = group_chat(-1020, "Admins")
    fake.add_bot_to(other, alice, status="administrator")
    await fake.wait_for_replies(other["id"], 1, within=WAIT)
    fake.add_bot_to(group, alice, status="administrator", was="member")  # promoted: no hello
    await fake.wait_until_delivered(within=WAIT)
    await asyncio.sleep(1)
    assert len(fake.replies(group["id"])) == 1


async def test_added_with_a_startgroup_link_it_introduces_itself_once(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any]
) -> None:
    """A t.me/<bot>?startgroup link adds the bot and sends the adder's /start at once: one
    hello, not a hello and a welcome that both say how to send a selfie there. A /start a
    while later is answered."""
    group = group_chat(-1021, "Link friends")
    fake.add_bot_to(group, alice)
    fake.send_command(alice, "/start@MoodLifterBot", group)
    await fake.wait_for_replies(group["id"], 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    await asyncio.sleep(1)
    (hello,) = fake.replies(group["id"])  # the join's hello or the /start's welcome
    how_to_send = wording.TELEGRAM_GROUP_HOW_TO_SEND.format(bot="MoodLifterBot")
    assert how_to_send in shown(hello)
    dora = user(5403, "Dora")  # another member's /start is hers: answered
    fake.send_command(dora, "/start@MoodLifterBot", group)
    welcome = (await fake.wait_for_replies(group["id"], 2, within=WAIT))[-1]
    assert shown(welcome).startswith(WELCOME) and how_to_send in shown(welcome)
    later = time.monotonic() + telegram_module.GREETED_FOR
    app.bot_data["greetings"].clock = lambda: later
    fake.send_command(alice, "/start@MoodLifterBot", group)
    welcome = (await fake.wait_for_replies(group["id"], 3, within=WAIT))[-1]
    assert shown(welcome).startswith(WELCOME) and how_to_send in shown(welcome)


async def test_an_album_with_a_video_reads_its_selfies_and_says_nothing_of_the_video(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    alice: dict[str, Any],
    selfie: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caption naming the bot may sit on an album's video: its photos are read. A video
    beside selfies (here or in private) gets no "not a photo"; an album of videos alone gets
    it once."""
    monkeypatch.setattr(telegram_module, "ALBUM_ITEMS_WAIT", 0.5)
    group = group_chat(-1017, "Trip")
    fake.send_video(alice, group, caption="@MoodLifterBot which song fits us?", media_group_id="11")
    photos = [fake.send_photo(alice, selfie, group, media_group_id="11") for _ in range(2)]
    fake.send_photo(alice, selfie, media_group_id="12")  # in private: a selfie and a video
    fake.send_video(alice, media_group_id="12")
    await fake.wait_for_replies(group["id"], 2, within=WAIT)
    await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    for _ in range(2):
        fake.send_video(alice, media_group_id="13")  # videos alone
    await fake.wait_for_replies(alice["id"], 2, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    await asyncio.sleep(1.5)  # past the videos' wait
    in_group = fake.replies(group["id"])
    assert sorted(c.reply_to for c in in_group) == sorted(p["message_id"] for p in photos)
    assert all(c.method == "sendPhoto" for c in in_group)
    card, notice = fake.replies(alice["id"])
    assert card.method == "sendPhoto" and shown(notice) == wording.NOT_A_PHOTO


async def test_what_nobody_asked_the_bot_in_a_group_gets_no_answer(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """A channel's post naming the bot, copied by Telegram into the channel's discussion group
    (an automatic forward), asks nothing of it; an anonymous admin's album naming it is asked
    once (not per photo) to write in private."""
    group = group_chat(-1018, "Channel chat")
    channel = {"id": -1007770001, "type": "channel", "title": "Music news"}
    text = "New: @MoodLifterBot picks a song for your selfie!"
    fake.send_message(
        fake.new_message(
            user(777000, "Telegram"), group, text=text, sender_chat=channel,
            is_automatic_forward=True, entities=fake._mention_entities(text),
        )
    )  # fmt: skip
    placeholder = user(1087968824, "Group")  # GroupAnonymousBot
    for n in range(4):
        caption = "@MoodLifterBot" if n == 0 else None
        fake.send_photo(
            placeholder, selfie, group, caption=caption, media_group_id="21", sender_chat=group
        )
    await fake.wait_for_replies(group["id"], 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    await asyncio.sleep(2)  # what the other updates would have said has been sent by now
    assert [shown(c) for c in fake.replies(group["id"])] == [wording.WRITE_IN_PRIVATE]


async def test_a_group_that_takes_no_photos_gets_text_cards_without_a_refusal_each(
    app: MoodApplication, fake: FakeTelegramAPI, alice: dict[str, Any], selfie: bytes
) -> None:
    """A group whose members (the bot too) may send text only: the first card's photo is
    refused and the card goes as text; the next card goes as text at once."""
    group = group_chat(-1016, "Text only")
    fake.fail_next(
        "sendPhoto",
        status=400,
        description="Bad Request: not enough rights to send photos to the chat",
        times=10,
    )
    for replies in (2, 3):  # a refused photo and the text; then the text alone
        fake.send_photo(alice, selfie, group, caption="@MoodLifterBot")
        await fake.wait_for_replies(group["id"], replies, within=WAIT)
        await fake.wait_until_delivered(within=WAIT)
    sent = [call for call in fake.replies(group["id"]) if "_message_id" in call.params]
    assert [call.method for call in sent] == ["sendMessage", "sendMessage"]
    assert all("by " in shown(call) for call in sent)  # the cards, as text
    assert len(fake.calls_to("sendPhoto")) == 1  # one refusal, not one per card
