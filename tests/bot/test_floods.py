"""Floods and fairness through the Telegram adapter: one user's flood costs only that user.

The real Application polls the fake Bot API; the core has a small per-user photo limit and a
small work queue, so a flood meets both. Every update still gets exactly one friendly reply.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import wording
from bot.telegram import GROUP_ANSWERS_PER_MINUTE, MoodApplication
from core import service as core_service
from core.config import LimitsSettings, Settings
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import ApiCall, FakeTelegramAPI, group_chat, shown, user

WAIT = 120.0
PER_MINUTE = 3
ACTIONS_PER_MINUTE = 12
SLOW_DOWN = re.compile(r"^Whoa, that's a lot of photos! Give me \d+ seconds and try again\.$")


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path) -> Settings:
    limits = LimitsSettings(
        photos_per_minute=PER_MINUTE,
        actions_per_minute=ACTIONS_PER_MINUTE,
        queue_size=1,
        workers=1,
    )
    return service_settings(tmp_path, music_dir, limits)


def is_card(call: ApiCall) -> bool:
    return call.method == "sendPhoto" and bool(call.buttons)


async def test_a_flood_is_slowed_down_kindly_and_others_are_still_served(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    alice, bob = user(5001, "Alice"), user(5002, "Bob")
    sizes = fake.photo_sizes(selfie)
    flood = [fake.send_photo(alice, b"", sizes=sizes) for _ in range(8)]
    bobs = fake.send_photo(bob, b"", sizes=sizes)
    answered = PER_MINUTE + 1  # each photo within the limit, and one "slow down"
    await fake.wait_for_replies(alice["id"], answered, within=WAIT)
    (bobs_reply,) = await fake.wait_for_replies(bob["id"], 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)

    # Each photo within the limit got a card (or a "busy" line while the queue was full); of
    # the photos beyond it (sent one by one, as "send without grouping" does), the first heard
    # "slow down" with the wait in seconds and the rest went unanswered: not the same words
    # five times.
    replies = fake.replies(alice["id"])
    assert len(replies) == answered  # nothing answered twice
    (slowed,) = [r for r in replies if SLOW_DOWN.match(shown(r))]
    assert slowed.reply_to == flood[PER_MINUTE]["message_id"]
    others = [r for r in replies if r is not slowed]
    assert all(is_card(r) or shown(r) == core_service.BUSY for r in others)
    assert sorted(r.reply_to for r in others) == [m["message_id"] for m in flood[:PER_MINUTE]]
    # Bob is not slowed down by Alice's flood.
    assert bobs_reply.reply_to == bobs["message_id"]
    assert is_card(bobs_reply) or shown(bobs_reply) == core_service.BUSY
    if not is_card(bobs_reply):  # the queue was full at that moment: trying again works
        fake.send_photo(bob, b"", sizes=sizes)
        assert is_card((await fake.wait_for_replies(bob["id"], 2, within=WAIT))[-1])
    # Photos turned away were never downloaded: at most Alice's admitted ones and Bob's two.
    assert len(fake.calls_to("getFile")) <= PER_MINUTE + 2


async def test_an_album_beyond_the_photo_limit_is_told_once(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    """An album's photos come as one message each: the ones beyond the limit get one "slow
    down" between them, not one each."""
    carol = user(5003, "Carol")
    sizes = fake.photo_sizes(selfie)
    album = [
        fake.send_photo(carol, b"", sizes=sizes, media_group_id="13579")
        for _ in range(PER_MINUTE + 4)
    ]
    await fake.wait_for_replies(carol["id"], PER_MINUTE + 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    replies = fake.replies(carol["id"])
    assert len([r for r in replies if SLOW_DOWN.match(shown(r))]) == 1
    assert len(replies) == PER_MINUTE + 1  # a card (or "busy") each within the limit, one notice
    assert {r.reply_to for r in replies} <= {m["message_id"] for m in album}


async def test_an_album_of_files_that_are_no_photo_or_too_big_hears_each_notice_once(
    app: MoodApplication, fake: FakeTelegramAPI, settings: Settings, selfie: bytes
) -> None:
    """Four PDFs in one album, and three image files over the size limit in another: one
    "not a photo" and one "too big", not the same words once per file."""
    dave = user(5004, "Dave")
    for n in range(4):
        fake.send_document(
            dave, b"%PDF-1.4", mime_type="application/pdf", file_name=f"doc{n}.pdf",
            media_group_id="24680",
        )  # fmt: skip
    too_big = settings.limits.max_image_bytes + 1
    for n in range(3):
        fake.send_document(
            dave, selfie, file_name=f"big{n}.jpg", declared_size=too_big, media_group_id="97531"
        )
    fake.send_text(dave, "/help")  # answered after the files: all their answers are in
    replies = await fake.wait_for_replies(dave["id"], 3, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    said = [shown(r) for r in fake.replies(dave["id"])]
    assert said.count(wording.NOT_A_PHOTO) == 1
    assert said.count(wording.too_big(settings.limits.max_image_bytes)) == 1
    assert len(said) == 3 and len(replies) >= 3
    assert fake.calls_to("getFile") == []  # nothing was downloaded


async def test_a_busy_group_gets_what_telegram_lets_a_bot_send_it_then_one_notice(
    app: MoodApplication, fake: FakeTelegramAPI
) -> None:
    """Telegram takes about 20 messages a minute from a bot into one group, then holds all of
    them: past that the bot says so once and waits, instead of queueing everyone behind 429s."""
    group = group_chat(-1013, "Party")
    people = [user(5200 + i, f"Guest{i}") for i in range(5)]
    for _ in range(5):
        for who in people:
            fake.send_command(who, "/help@MoodLifterBot", group)
    await fake.wait_for_replies(group["id"], GROUP_ANSWERS_PER_MINUTE + 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    texts = [shown(r) for r in fake.replies(group["id"])]
    assert texts.count(wording.GROUP_FULL) == 1
    assert len(texts) == GROUP_ANSWERS_PER_MINUTE + 1
    fake.send_command(people[0], "/help")  # private chats are not held back by the group
    (private,) = await fake.wait_for_replies(people[0]["id"], 1, within=WAIT)
    assert "/more" in shown(private)


async def test_presses_that_post_nothing_leave_the_group_its_answers(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    """Bystanders without a selfie pressing "Another song" under a card get an alert each and
    post nothing in the group, so their presses take none of its ~20 answers a minute: the
    next selfie sent there still gets its card."""
    group = group_chat(-1014, "Gang")
    alice, carol = user(5301, "Alice"), user(5302, "Carol")
    bystanders = [user(5310 + i, f"Bystander{i}") for i in range(3)]
    fake.send_photo(alice, selfie, group, caption="@MoodLifterBot")
    (card,) = await fake.wait_for_replies(group["id"], 1, within=WAIT)
    for who in bystanders:
        for _ in range(GROUP_ANSWERS_PER_MINUTE // len(bystanders) + 1):
            press = fake.press_button(who, card, "more")
            await fake.wait_for(
                lambda call, press=press: call.params.get("callback_query_id") == press,
                within=WAIT,
            )
    assert len(fake.replies(group["id"])) == 1  # the presses posted nothing
    fake.send_photo(carol, selfie, group, caption="@MoodLifterBot")
    _, carols = await fake.wait_for_replies(group["id"], 2, within=WAIT)
    assert is_card(carols)


async def test_a_full_queue_says_busy_instead_of_making_everyone_wait(
    app: MoodApplication, fake: FakeTelegramAPI, selfie: bytes
) -> None:
    people = [user(5100 + i, f"User{i}") for i in range(8)]
    sizes = fake.photo_sizes(selfie)
    sent = [fake.send_photo(who, b"", sizes=sizes) for who in people]
    replies = [(await fake.wait_for_replies(who["id"], 1, within=WAIT))[0] for who in people]
    assert [r.reply_to for r in replies] == [m["message_id"] for m in sent]
    texts = [shown(r) for r in replies if not is_card(r)]
    assert all(text == core_service.BUSY for text in texts), texts
    assert texts  # eight photos at once and room for one: some were told to come back
    assert any(is_card(r) for r in replies)


async def test_a_flood_of_anything_is_answered_once_then_ignored(
    app: MoodApplication, fake: FakeTelegramAPI
) -> None:
    alice, bob = user(5201, "Alice"), user(5202, "Bob")
    for n in range(ACTIONS_PER_MINUTE + 8):
        fake.send_text(alice, f"hello {n}")
    replies = await fake.wait_for_replies(alice["id"], ACTIONS_PER_MINUTE + 1, within=WAIT)
    fake.send_command(bob, "/help")
    (bobs,) = await fake.wait_for_replies(bob["id"], 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)

    texts = [shown(r) for r in fake.replies(alice["id"])]
    told = [t for t in texts if t.startswith("Whoa, that's a lot at once!")]
    assert len(told) == 1  # told once, the rest of the flood dropped
    assert len(texts) == ACTIONS_PER_MINUTE + 1 == len(replies)
    assert "/more" in shown(bobs)  # Bob is served as ever


async def test_group_chatter_the_bot_ignores_does_not_count_toward_a_flood(
    app: MoodApplication, fake: FakeTelegramAPI
) -> None:
    alice = user(5301, "Alice")
    group = group_chat()
    for n in range(ACTIONS_PER_MINUTE + 3):
        fake.send_text(alice, f"lunch at {n}?", group)
        fake.send_command(alice, f"/poll@OtherBot lunch at {n}?", group)  # another bot's
        fake.send_command(alice, "/roll", group)  # bare, but none of ours: another bot's too
    fake.send_command(alice, "/help")
    (answer,) = await fake.wait_for_replies(alice["id"], 1, within=WAIT)
    await fake.wait_until_delivered(within=WAIT)
    assert "/more" in shown(answer)
    assert not fake.replies(group["id"])
