"""What the core answers, independent of any chat platform.

Adapters in ``bot/`` render these: a :class:`TrackCard` becomes a photo with a caption and
buttons, an :class:`EmotionSummary` a short report, a :class:`History` a list of songs with
links, a :class:`Notice` a friendly message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class NoticeKind(enum.StrEnum):
    """Why the core answered with words instead of a song; adapters may style each kind."""

    WELCOME = "welcome"
    HELP = "help"
    NO_FACE = "no_face"
    BAD_IMAGE = "bad_image"
    NEED_SELFIE = "need_selfie"
    STILL_READING = "still_reading"
    CATALOG_EMPTY = "catalog_empty"
    SLOW_DOWN = "slow_down"
    BUSY = "busy"
    CONFIRM_FORGET = "confirm_forget"
    FORGOTTEN = "forgotten"
    KEPT = "kept"
    MODE_SET = "mode_set"
    RATED = "rated"
    NOT_RATABLE = "not_ratable"
    NO_HISTORY = "no_history"
    BAD_ARGUMENT = "bad_argument"


@dataclass(frozen=True)
class FaceReading:
    """One face found in a photo: where it is and what it shows."""

    box: tuple[int, int, int, int]  # x, y, width, height in the photo's pixels
    emotion: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Picture:
    """An image to upload with a card, with its format: Discord shows an attachment by its
    file name's suffix, so the adapter must not have to guess."""

    data: bytes
    kind: str = "jpeg"  # Pillow's format name in lower case: jpeg, png, webp or gif

    @property
    def suffix(self) -> str:
        return "jpg" if self.kind == "jpeg" else self.kind


@dataclass(frozen=True)
class TrackCard:
    """A song to send, with why it was chosen."""

    track_id: str  # Spotify track id
    title: str
    artist: str
    album: str | None
    mood: str  # calm | happy | energetic | sad
    spotify_url: str
    art_url: str | None = None  # remote album art, when known
    art_checked_at: datetime | None = None  # when a lookup last found no art
    art_from_catalog: bool = False  # the two above are the catalog's as of the pick
    emotion: str | None = None  # the emotion that led here (None for a plain /more)
    confidence: float | None = None
    reason: str = ""  # e.g. "you look sad — here is something calm"
    faces: tuple[FaceReading, ...] = ()
    new_round: bool = False  # every track of this mood was given; starting over
    notes: tuple[str, ...] = field(default_factory=tuple)  # e.g. "3 faces: ..."


@dataclass(frozen=True)
class EmotionSummary:
    """The user's last reading, for /mood."""

    emotion: str
    confidence: float
    probabilities: dict[str, float]  # all seven, summing to ~1
    mood: str
    detected_at: datetime
    faces: int = 1
    chart_png: bytes | None = None


@dataclass(frozen=True)
class HistoryItem:
    """One song the user was sent, for /history."""

    track_id: str
    title: str
    artist: str
    spotify_url: str
    mood: str
    emotion: str | None  # the emotion read when it was sent (None: no reading recorded)
    rating: int | None  # +1 liked, -1 disliked, None not rated
    delivered_at: datetime


@dataclass(frozen=True)
class History:
    """The user's last songs, newest first; ``limit`` is the most one /history lists."""

    items: tuple[HistoryItem, ...]
    asked: int
    limit: int

    @property
    def capped(self) -> bool:
        """More were asked for than one /history lists, and some were left out for it."""
        return self.asked > self.limit and len(self.items) == self.limit


@dataclass(frozen=True)
class Notice:
    """A friendly message instead of a song."""

    kind: NoticeKind
    text: str

    @property
    def asks_for_a_selfie(self) -> bool:
        """The welcome, and /more, /mood, /history with none yet: where sending a selfie is not
        obvious (a Telegram group, Discord), the adapters add how."""
        return self.kind in _ASKING_FOR_A_SELFIE


_ASKING_FOR_A_SELFIE = frozenset(
    {NoticeKind.WELCOME, NoticeKind.NEED_SELFIE, NoticeKind.NO_HISTORY}
)


Reply = TrackCard | EmotionSummary | History | Notice
