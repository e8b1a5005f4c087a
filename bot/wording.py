"""The words every chat adapter shows, built once so they mean the same on every platform.

Plain text only: each adapter adds its own markup (Telegram HTML captions, Discord embeds), but
the facts, their order and their phrasing come from here. Notices carry their own text from
``core``; this module only adds what the adapters say themselves (button labels, how to send a
photo on each platform, attachment problems, private-chat and group notices, expired buttons,
throttling and error lines).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from core.moods import looks
from core.percents import whole_percent, whole_percents
from core.replies import EmotionSummary, FaceReading, History, HistoryItem, TrackCard

# Buttons and labels, identical on every platform.
ANOTHER_SONG = "Another song"
OPEN_IN_SPOTIFY = "Open in Spotify"
SPOTIFY = "Spotify"  # a link's label after a /history line on Discord
FORGET_YES = "Yes, forget me"
FORGET_NO = "Keep my data"
LIKE = "👍"
DISLIKE = "👎"
LABEL_EMOTION = "Emotion"
LABEL_MOOD = "Song mood"  # the music's mood, beside the emotion read on the face
LABEL_WHY = "Why"

# What the adapters say on their own behalf.
WRITE_IN_PRIVATE = (
    "I can't tell who you are when you write as a channel or an anonymous admin. "
    "Send me your selfie in a private chat instead."
)
SENT_IN_PRIVATE = "That's between you and me — I've sent it to you in our private chat."
OPEN_PRIVATE_CHAT = (
    "That's between you and me, so I only show it in a private chat: open {link} and press "
    "Start (if you had blocked me, unblock me there first)."
)
GROUP_HELLO = "Hi everyone! I pick a song for the mood I read on your face."  # then how
TELEGRAM_GROUP_HOW_TO_SEND = (
    "In a group, send me your selfie with @{bot} in its caption, or as a reply to one of my "
    "messages, and I'll answer with a song for your mood."
)
# The same, short enough for a button's alert (Telegram shows at most 200 characters there).
TELEGRAM_GROUP_SELFIE_HINT = "In this group, put @{bot} in your selfie's caption."
OWN_CARD = (
    "That's one of my song cards 🙂 Send me a selfie of you and I'll pick a song for your mood."
)
PHOTO_GONE = "I couldn't download that photo (was it deleted?). Please send it again."
NOT_A_PHOTO = "That doesn't look like a photo. Please send me a selfie — a photo of your face."
NEEDS_EMBED_LINKS = (
    "I can't post my song cards in this channel: I need the Embed Links permission here. Ask a "
    "server admin to turn it on for me, or send me your selfie in a DM."
)
DISCORD_HOW_TO_SEND = (
    "Send me a selfie with /selfie photo:, as a photo in a DM with me, or in a server channel "
    "in a message that mentions me, and I'll answer with a song for your mood."
)
DISCORD_HOW_TO_SEND_PRIVATELY = (  # where answers in servers are private (discord.ephemeral)
    "Send me a selfie with /selfie photo:, or as a photo in a DM with me, "
    "and I'll answer with a song for your mood."
)
DISCORD_SELFIE_HOW = "(With /selfie photo:, or as a photo in a DM with me.)"
PRIVATE_ANSWERS_HERE = (
    "In this server my answers are private: send your selfie with /selfie photo: "
    "(only you will see the song), or in a DM with me."
)
FORGET_NOT_YOURS = "Only the person who asked can answer this."
GROUP_FULL = "This group is keeping me very busy — give me a minute, then I'm all ears again."
FOR_WHOM = "For {name}"  # under a card a button press brought to a group chat
BUTTON_EXPIRED = "This button no longer works. Send a selfie to start again."
STILL_CATCHING_UP = "I'm still catching up — please wait a moment, then try again."
SOMETHING_WENT_WRONG = "Sorry, something went wrong on my side. Please try again in a moment."
# A send that timed out may still have arrived: no promise either way.
PLATFORM_SLOW = (
    "The chat service was slow to answer me just now. If my answer didn't arrive, "
    "please try again in a moment."
)

_BAR_WIDTH = 10


def discord_how_to_send(private_in_servers: bool) -> str:
    """How to send a selfie on Discord: a photo that mentions the bot in a server only where
    its answers there may be public."""
    return DISCORD_HOW_TO_SEND_PRIVATELY if private_in_servers else DISCORD_HOW_TO_SEND


_RATING_MARKS = {1: LIKE, -1: DISLIKE}


def percent(probability: float) -> str:
    """``0.873`` → ``"87 %"`` (a narrow no-break space would not survive every client)."""
    return f"{whole_percent(probability)} %"


def too_big(limit_bytes: int) -> str:
    """The reply to a file over the byte limit, naming the limit in megabytes."""
    return f"That file is too big — please send a photo under {size(limit_bytes)}."


def size(n_bytes: int) -> str:
    """``20971520`` → ``"20 MB"``, ``10000`` → ``"9 kB"`` (binary units, as file managers show)."""
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.3g} MB"
    return f"{max(1, n_bytes // 2**10)} kB"


def emotion_line(emotion: str, confidence: float | None) -> str:
    """``"happy 87 %"``, or just the emotion when the confidence is unknown."""
    return emotion if confidence is None else f"{emotion} {percent(confidence)}"


def artist_line(song: TrackCard | HistoryItem) -> str:
    """``"by Artist"``."""
    return f"by {song.artist}"


def album_line(card: TrackCard) -> str | None:
    """``"from the album Album"``, or None when the album is unknown."""
    return f"from the album {card.album}" if card.album else None


def new_round_note(card: TrackCard) -> str | None:
    """Said when every track of the mood was given and the rotation starts over."""
    if not card.new_round:
        return None
    return f"You've heard all my {card.mood} songs — starting a new round."


FACES_LISTED = 5  # a crowd's note names the largest faces' readings and counts the rest


def faces_note(faces: tuple[FaceReading, ...]) -> str | None:
    """``"3 faces: happy 87 %, sad 60 %, neutral 55 %."`` (None for a single face); past
    :data:`FACES_LISTED` faces (largest first), ``"..., and 15 more."``."""
    if len(faces) < 2:
        return None
    listed = faces if len(faces) <= FACES_LISTED + 1 else faces[:FACES_LISTED]
    readings = ", ".join(emotion_line(face.emotion, face.confidence) for face in listed)
    more = f", and {len(faces) - len(listed)} more" if len(listed) < len(faces) else ""
    return f"{len(faces)} faces: {readings}{more}."


def card_notes(card: TrackCard) -> list[str]:
    """The small print under a card: the new-round note, the several-faces note, core's notes."""
    notes = [new_round_note(card)]
    # Core may already explain several faces in its own notes; say it once.
    if not any("faces" in note for note in card.notes):
        notes.append(faces_note(card.faces))
    notes.extend(card.notes)
    return [note for note in notes if note]


def card_facts(card: TrackCard) -> list[tuple[str, str]]:
    """Labelled facts of a card, in display order: emotion, mood, why."""
    facts: list[tuple[str, str]] = []
    if card.emotion:
        facts.append((LABEL_EMOTION, emotion_line(card.emotion, card.confidence)))
    facts.append((LABEL_MOOD, card.mood))
    if card.reason:
        facts.append((LABEL_WHY, card.reason))
    return facts


def summary_headline(summary: EmotionSummary) -> str:
    """``"Last time you looked angry (87 %), so I'm picking calm songs for you."``

    ``summary.mood`` is the music mood for that look under the user's mode now (what /more
    serves), not the face's mood: in lift mode an angry face gets calm songs.
    """
    return (
        f"Last time you looked {looks(summary.emotion)} ({percent(summary.confidence)}), "
        f"so I'm picking {summary.mood} songs for you."
    )


def probability_lines(probabilities: dict[str, float]) -> list[str]:
    """All seven emotions, most likely first: ``"happy     ████████▋  87 %"``-style rows.

    The percentages add up to 100 (:func:`core.percents.whole_percents`).
    """
    width = max((len(name) for name in probabilities), default=0)
    shown = whole_percents(probabilities)
    rows = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    return [f"{name:<{width}}  {_bar(p)}  {f'{shown[name]} %':>5}" for name, p in rows]


def summary_footer(summary: EmotionSummary, now: datetime | None = None) -> str:
    """When the reading was taken and from how many faces."""
    when = ago(summary.detected_at, now)
    if summary.faces > 1:
        return f"Read {when} from {summary.faces} faces."
    return f"Read {when}."


def history_title(history: History) -> str:
    """``"Your last 10 songs, newest first"``."""
    n = len(history.items)
    return f"Your last {n} songs, newest first" if n > 1 else "Your last song"


HISTORY_TITLE_MAX = 200  # characters of a title in a /history line
HISTORY_ARTIST_MAX = 100  # ... and of its artist, so the mood, rating and date always show


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def history_details(item: HistoryItem) -> str:
    """What follows a song's linked title: ``"by Artist · sad → calm · 👍 · 2026-11-25"``."""
    artist = f"by {clip(item.artist, HISTORY_ARTIST_MAX)}"
    parts = [artist, f"{item.emotion} → {item.mood}" if item.emotion else item.mood]
    if item.rating in _RATING_MARKS:
        parts.append(_RATING_MARKS[item.rating])
    parts.append(f"{item.delivered_at.astimezone(UTC):%Y-%m-%d}")
    return " · ".join(parts)


def history_footer(history: History) -> str | None:
    """Said when more songs were asked for than one /history lists."""
    if not history.capped:
        return None
    return f"I list at most {history.limit} songs at a time."


def pages(lines: list[str], limit: int, length: Callable[[str], int] = len) -> list[str]:
    """Join ``lines`` into as few texts as fit ``limit`` each (by ``length``), never splitting
    a line; a line longer than ``limit`` on its own is left for the caller to clip."""
    out: list[str] = []
    for line in lines:
        if out and length(f"{out[-1]}\n{line}") <= limit:
            out[-1] = f"{out[-1]}\n{line}"
        else:
            out.append(line)
    return out


def _bar(probability: float) -> str:
    filled = round(max(0.0, min(1.0, probability)) * _BAR_WIDTH)
    return "█" * filled + "·" * (_BAR_WIDTH - filled)


def ago(moment: datetime, now: datetime | None = None) -> str:
    """``"just now"``, ``"5 minutes ago"``, ``"3 hours ago"``; older: ``"on 2026-11-25"``.

    Relative, so it reads right in every user's time zone (a clock time in UTC made each
    user do the sum); past a day, the date (UTC). Naive datetimes (the store's) are UTC. A
    moment up to a minute ahead (another machine's clock) is "just now"; further ahead, a
    clock is wrong and the date is said.
    """
    moment, now = _utc(moment), _utc(now or datetime.now(UTC))
    seconds = (now - moment).total_seconds()
    if -60 <= seconds < 60:
        return "just now"
    if 0 < seconds < 3600:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes > 1 else ''} ago"
    if 0 < seconds < 86400:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours > 1 else ''} ago"
    return f"on {moment.astimezone(UTC):%Y-%m-%d}"


def _utc(moment: datetime) -> datetime:
    """``moment`` with its zone; a naive one (the store's) is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


UNKNOWN_COMMAND = "I don't know {command}. "  # then the help, which starts with how to send
COMMAND_FOR_ANOTHER_BOT = "{command}@{bot} is for another bot, not for me. "  # then the help
