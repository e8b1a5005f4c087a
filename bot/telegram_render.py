"""Turn core replies into Telegram messages: HTML text or caption, photo, inline keyboard.

Pure functions, no I/O, so every shape of reply is easy to test. All user-visible text from the
core or the catalog goes through :func:`html.escape`; messages use ``ParseMode.HTML``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import wording
from core.replies import (
    EmotionSummary,
    History,
    HistoryItem,
    Notice,
    NoticeKind,
    Picture,
    Reply,
    TrackCard,
)

CAPTION_LIMIT = 1024  # Telegram's limit for photo captions
TEXT_LIMIT = 4096  # ... and for message text

# Callback data: short, versionless, validated by CALLBACK_PATTERN before anything acts on it.
# A rating names the track (a Spotify id), never a user: it counts for whoever presses, and only
# for a song the core sent them.
MORE = "more"
RATE_UP = "rate:up"
RATE_DOWN = "rate:down"
FORGET_YES = "forget:yes"
FORGET_NO = "forget:no"
CALLBACK_PATTERN = re.compile(
    r"^(?:more"
    r"|rate:(?P<rating>up|down):(?P<track>[0-9A-Za-z]{22})"
    r"|forget:(?P<answer>yes|no):(?P<owner>\d{1,20}))$"
)
RATINGS = {"up": 1, "down": -1}  # the callback's word → the core's rating
_TRACK_ID = re.compile(r"^[0-9A-Za-z]{22}$")


@dataclass(frozen=True)
class Outgoing:
    """One message to send: HTML text (or caption), an optional photo, an optional keyboard."""

    text: str
    photo: bytes | str | None = None  # bytes to upload, or a URL Telegram fetches itself
    keyboard: InlineKeyboardMarkup | None = None


def render(reply: Reply, *, user_id: int, art: Picture | None = None) -> list[Outgoing]:
    """The messages for any core reply (one, but a long /history takes several); ``art`` is
    the card image when the core has one."""
    if isinstance(reply, TrackCard):
        return [render_card(reply, art)]
    if isinstance(reply, EmotionSummary):
        return [render_summary(reply)]
    if isinstance(reply, History):
        return render_history(reply)
    return [render_notice(reply, user_id=user_id)]


def render_card(card: TrackCard, art: Picture | None = None) -> Outgoing:
    """A song: its picture (uploaded, else the art URL) with a caption, or a text card."""
    photo: bytes | str | None = art.data if art is not None else card.art_url or None
    limit = CAPTION_LIMIT if photo is not None else TEXT_LIMIT
    return Outgoing(text=card_caption(card, limit), photo=photo, keyboard=card_keyboard(card))


def card_caption(card: TrackCard, limit: int = CAPTION_LIMIT) -> str:
    """Title, artist, album, the emotion with its confidence, the mood, why, and small print."""
    lines = [f"🎵 <b>{_e(card.title)}</b>", _e(wording.artist_line(card))]
    album = wording.album_line(card)
    if album:
        lines.append(_e(album))
    lines.extend(f"<b>{_e(label)}:</b> {_e(value)}" for label, value in wording.card_facts(card))
    notes = [f"<i>{_e(note)}</i>" for note in wording.card_notes(card)]
    return _fit(lines, notes, limit)


def card_keyboard(card: TrackCard) -> InlineKeyboardMarkup:
    """ "Open in Spotify" (when the link is a web link) and "Another song"; under them 👍 / 👎."""
    row = []
    if card.spotify_url.startswith("https://"):
        row.append(InlineKeyboardButton(wording.OPEN_IN_SPOTIFY, url=card.spotify_url))
    row.append(InlineKeyboardButton(wording.ANOTHER_SONG, callback_data=MORE))
    rows = [row]
    if _TRACK_ID.match(card.track_id):
        rows.append(
            [
                InlineKeyboardButton(wording.LIKE, callback_data=f"{RATE_UP}:{card.track_id}"),
                InlineKeyboardButton(wording.DISLIKE, callback_data=f"{RATE_DOWN}:{card.track_id}"),
            ]
        )
    return InlineKeyboardMarkup(rows)


def render_history(history: History) -> list[Outgoing]:
    """/history: a title, then one line per song with its link; as many messages as it takes."""
    lines = [f"<b>{_e(wording.history_title(history))}</b>"]
    lines.extend(history_line(n, item) for n, item in enumerate(history.items, 1))
    footer = wording.history_footer(history)
    if footer:
        lines.append(f"<i>{_e(footer)}</i>")
    return [Outgoing(text=text) for text in wording.pages(lines, TEXT_LIMIT, visible_length)]


def history_line(n: int, item: HistoryItem) -> str:
    """``"3. <a href=...>Title</a> by Artist · sad → calm · 👍 · 2026-11-25"``."""
    title = _e(wording.clip(item.title, wording.HISTORY_TITLE_MAX))
    if item.spotify_url.startswith("https://"):
        title = f'<a href="{html.escape(item.spotify_url)}">{title}</a>'
    return f"{n}. {title} {_e(wording.history_details(item))}"


def render_summary(summary: EmotionSummary) -> Outgoing:
    """The last reading: the chart image (when drawn) with the same words as its caption."""
    photo = summary.chart_png or None
    limit = CAPTION_LIMIT if photo is not None else TEXT_LIMIT
    return Outgoing(text=summary_text(summary, limit), photo=photo)


def summary_text(summary: EmotionSummary, limit: int = TEXT_LIMIT) -> str:
    """The headline, all seven probabilities as bars, and when it was read."""
    bars = "\n".join(_e(line) for line in wording.probability_lines(summary.probabilities))
    lines = [
        _e(wording.summary_headline(summary)),
        f"<pre>{bars}</pre>",
        _e(wording.summary_footer(summary)),
    ]
    return _fit(lines, [], limit)


def render_notice(notice: Notice, *, user_id: int) -> Outgoing:
    """Words; a forget confirmation carries the buttons that only ``user_id`` may use."""
    keyboard = None
    if notice.kind is NoticeKind.CONFIRM_FORGET:
        keyboard = InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        wording.FORGET_YES, callback_data=f"{FORGET_YES}:{user_id}"
                    ),
                    InlineKeyboardButton(wording.FORGET_NO, callback_data=f"{FORGET_NO}:{user_id}"),
                ]
            ]
        )
    return Outgoing(text=_e(notice.text)[:TEXT_LIMIT], keyboard=keyboard)


def plain(text: str) -> Outgoing:
    """An adapter's own short message (escaped)."""
    return Outgoing(text=_e(text))


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def visible_length(markup: str) -> int:
    """What Telegram counts against its limits: the text after HTML parsing, in UTF-16 units."""
    shown = html.unescape(re.sub(r"<[^>]+>", "", markup))
    return len(shown.encode("utf-16-le")) // 2


def _fit(lines: list[str], optional: list[str], limit: int) -> str:
    """Join lines, adding optional ones while they fit; never cut inside an HTML tag."""
    text = "\n".join(lines)
    for extra in optional:
        candidate = f"{text}\n{extra}"
        if visible_length(candidate) > limit:
            break
        text = candidate
    if visible_length(text) <= limit:
        return text
    # Only the required lines overflow (absurdly long titles): drop the markup, then cut.
    bare = html.unescape(re.sub(r"<[^>]+>", "", text))
    while len(bare.encode("utf-16-le")) // 2 > limit - 1:
        bare = bare[: len(bare) - max(1, len(bare) // 20)]
    return _e(bare) + "…"
