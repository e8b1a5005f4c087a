"""Rendering core replies as Telegram messages: escaping, limits, keyboards, callback data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import telegram_render as tr
from bot import wording
from core.replies import (
    EmotionSummary,
    FaceReading,
    History,
    HistoryItem,
    Notice,
    NoticeKind,
    Picture,
    TrackCard,
)
from tests.fakes.telegram_api import visible_text

PROBABILITIES = {
    "angry": 0.05,
    "disgust": 0.01,
    "fear": 0.04,
    "happy": 0.02,
    "sad": 0.72,
    "surprise": 0.06,
    "neutral": 0.10,
}


def _card(**changes: object) -> TrackCard:
    fields: dict[str, object] = {
        "track_id": "4uLU6hMCjMI75M1A2tKUQC",
        "title": "Never <Gonna> & Give",
        "artist": "Rick \u202eAstley",
        "album": "Whenever You Need Somebody",
        "mood": "calm",
        "spotify_url": "https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC",
        "emotion": "sad",
        "confidence": 0.72,
        "reason": "you look sad — here is something calm",
    }
    fields.update(changes)
    return TrackCard(**fields)  # type: ignore[arg-type]


def test_card_caption_escapes_and_says_everything() -> None:
    out = tr.render_card(_card(), art=Picture(b"\x89PNG", "png"))
    assert out.photo == b"\x89PNG"
    assert "&lt;Gonna&gt; &amp; Give" in out.text
    assert "<Gonna>" not in out.text
    shown = visible_text(out.text)
    for fact in (
        "Never <Gonna> & Give",
        "Rick \u202eAstley",
        "Whenever You Need Somebody",
        "sad 72 %",
        "calm",
        "you look sad — here is something calm",
    ):
        assert fact in shown
    (url, more), (like, dislike) = out.keyboard.inline_keyboard
    assert (url.text, url.url) == (wording.OPEN_IN_SPOTIFY, _card().spotify_url)
    assert (more.text, more.callback_data) == (wording.ANOTHER_SONG, tr.MORE)
    assert (like.text, like.callback_data) == (wording.LIKE, "rate:up:4uLU6hMCjMI75M1A2tKUQC")
    assert (dislike.text, dislike.callback_data) == (
        wording.DISLIKE,
        "rate:down:4uLU6hMCjMI75M1A2tKUQC",
    )
    for button in (more, like, dislike):
        assert len(button.callback_data.encode()) <= 64  # Telegram's limit
        assert tr.CALLBACK_PATTERN.fullmatch(button.callback_data)


def test_card_without_a_picture_is_text_or_its_art_url() -> None:
    assert tr.render_card(_card()).photo is None
    assert tr.render_card(_card(art_url="https://i.scdn.co/image/x")).photo == (
        "https://i.scdn.co/image/x"
    )
    assert tr.render_card(_card(), Picture(b"jpeg bytes")).photo == b"jpeg bytes"


def test_card_keyboard_drops_a_link_that_is_not_https() -> None:
    buttons = tr.card_keyboard(_card(spotify_url="javascript:alert(1)")).inline_keyboard[0]
    assert [b.callback_data for b in buttons] == [tr.MORE]


def test_new_round_and_faces_notes_and_the_caption_limit() -> None:
    faces = tuple(FaceReading((0, 0, 9, 9), "happy", 0.9, PROBABILITIES) for _ in range(3))
    card = _card(new_round=True, faces=faces, notes=("x" * 2000,))
    caption = tr.card_caption(card)
    assert tr.visible_length(caption) <= tr.CAPTION_LIMIT
    assert "new round" in caption and "3 faces" in caption
    assert "x" * 100 not in caption  # the oversize note is left out, not cut mid-tag
    giant = tr.card_caption(_card(title="<b>" * 2000))
    assert tr.visible_length(giant) <= tr.CAPTION_LIMIT
    assert "&lt;b&gt;" in giant  # escaped, so it is still valid HTML
    assert "<b>&lt;b&gt;" not in giant[-20:]


def test_plain_card_without_emotion_says_the_mood() -> None:
    shown = visible_text(tr.card_caption(_card(emotion=None, confidence=None, reason="")))
    assert "Emotion" not in shown and "calm" in shown


def test_summary_lists_all_seven_and_when() -> None:
    summary = EmotionSummary(
        emotion="sad",
        confidence=0.72,
        probabilities=PROBABILITIES,
        mood="calm",
        detected_at=datetime.now(UTC) - timedelta(minutes=5),
        faces=2,
    )
    out = tr.render_summary(summary)
    assert out.photo is None
    shown = visible_text(out.text)
    for name in PROBABILITIES:
        assert name in shown
    assert "72 %" in shown and "calm" in shown and "2 faces" in shown
    assert "Read 5 minutes ago from 2 faces." in shown
    lines = [line for line in shown.splitlines() if "█" in line or "·" in line]
    assert lines[0].startswith("sad")  # most likely first
    with_chart = tr.render_summary(
        EmotionSummary("sad", 0.72, PROBABILITIES, "calm", summary.detected_at, chart_png=b"PNG")
    )
    assert with_chart.photo == b"PNG" and tr.visible_length(with_chart.text) <= tr.CAPTION_LIMIT


def test_forget_confirmation_buttons_belong_to_the_asker() -> None:
    out = tr.render_notice(Notice(NoticeKind.CONFIRM_FORGET, "Sure?"), user_id=777)
    yes, no = out.keyboard.inline_keyboard[0]
    assert (yes.callback_data, no.callback_data) == ("forget:yes:777", "forget:no:777")
    for data in (yes.callback_data, no.callback_data, tr.MORE):
        assert tr.CALLBACK_PATTERN.fullmatch(data)
    for forged in (
        "forget:yes:",
        "forget:yes:1; DROP",
        "more ",
        "forget:maybe:1",
        "",
        "x" * 64,
        "rate:up:4uLU6hMCjMI75M1A2tKUQ",  # 21 characters
        "rate:meh:4uLU6hMCjMI75M1A2tKUQC",
        "rate:up:4uLU6hMCjMI75M1A2tKUQC:1002",
        "rate:up:' OR 1=1 --xxxxxxxxxxx",
    ):
        assert not tr.CALLBACK_PATTERN.fullmatch(forged)


def test_notices_are_escaped_text() -> None:
    out = tr.render_notice(Notice(NoticeKind.HELP, "Use /mode <lift|match> & smile"), user_id=1)
    assert out.text == "Use /mode &lt;lift|match&gt; &amp; smile"
    assert out.keyboard is None and out.photo is None


def _item(n: int, **changes: object) -> HistoryItem:
    fields: dict[str, object] = {
        "track_id": f"{n:0>22}",
        "title": f"Song <{n}> & co",
        "artist": "Ann & Bob",
        "spotify_url": f"https://open.spotify.com/track/{n:0>22}",
        "mood": "calm",
        "emotion": "fear",
        "rating": (1, -1, None)[n % 3],
        "delivered_at": datetime(2026, 11, 25, 12, 0, tzinfo=UTC) - timedelta(minutes=n),
    }
    fields.update(changes)
    return HistoryItem(**fields)  # type: ignore[arg-type]


def test_history_links_every_song_with_emotion_mood_and_rating() -> None:
    history = History(tuple(_item(n) for n in range(3)), asked=10, limit=100)
    (out,) = tr.render(history, user_id=1)
    shown = visible_text(out.text).splitlines()
    assert shown[0] == "Your last 3 songs, newest first"
    assert shown[1] == "1. Song <0> & co by Ann & Bob · fear → calm · 👍 · 2026-11-25"
    assert shown[2].endswith("fear → calm · 👎 · 2026-11-25")
    assert "👍" not in shown[3] and "👎" not in shown[3]
    assert out.text.count('<a href="https://open.spotify.com/track/') == 3
    assert "&lt;0&gt; &amp; co" in out.text


def test_a_long_artist_or_title_never_hides_the_mood_rating_and_date() -> None:
    """Titles and artists may be hundreds of characters: they are cut (with "…"), the rest of
    the line stays; a cap no songs were left out for is not mentioned."""
    item = _item(0, title="T" * 300, artist="A" * 300)
    (out,) = tr.render(History((item,), asked=500, limit=100), user_id=1)
    title, line = visible_text(out.text).splitlines()
    assert title == "Your last song"
    assert f"{'T' * 199}… by {'A' * 99}… · fear → calm · 👍 · 2026-11-25" in line
    assert "at most" not in out.text  # one song of the 500 asked for: none left out


def test_a_long_history_takes_several_messages_within_the_limit() -> None:
    long_title = "A very long song title " * 8
    items = tuple(_item(n, title=long_title) for n in range(100))
    history = History(items, asked=500, limit=100)
    messages = tr.render(history, user_id=1)
    assert len(messages) > 1
    assert all(tr.visible_length(m.text) <= tr.TEXT_LIMIT for m in messages)
    numbered = [
        line for m in messages for line in visible_text(m.text).splitlines() if line[:1].isdigit()
    ]
    assert [int(line.split(".")[0]) for line in numbered] == list(range(1, 101))
    assert visible_text(messages[-1].text).endswith("I list at most 100 songs at a time.")
