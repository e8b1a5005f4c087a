"""The use cases of the bot, free of any chat platform: photo, more, mood, mode, rate, history,
forget.

Adapters call one method per user action and render the :mod:`core.replies` it returns. The
CPU-heavy reading of a photo runs in a pool of ``limits.workers`` threads, at most
``limits.queue_size`` photos being read or waiting for a thread (beyond that the user is asked to
try again), so the event loop keeps serving everyone else; a per-user rate limit stops floods.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core import moods
from core.artwork import ArtResolver
from core.cards import drawn_card
from core.charts import emotion_chart
from core.config import Settings
from core.errors import CatalogEmpty, NotYourTrack, UnknownUser
from core.images import ImageError
from core.ratelimit import RateLimiter
from core.reading import PhotoReader, group_emotion
from core.recommend import Recommender, effective_mode
from core.replies import (
    EmotionSummary,
    FaceReading,
    History,
    HistoryItem,
    Notice,
    NoticeKind,
    Picture,
    Reply,
    TrackCard,
)
from core.store import Store, UserRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserRef:
    """Who is asking: the platform and that platform's id for the user."""

    platform: str  # "telegram" | "discord" | "cli"
    user_id: str
    name: str | None = None


WELCOME = (
    "Hi! Send me a selfie and I'll read the mood on your face and pick a song for it.\n"
    "I never save your photo. /help shows what else I can do."
)
HELP_SEND = (
    "Send me a selfie (a photo: JPEG, PNG or an iPhone's HEIC) and I'll answer with a song for "
    "your mood."
)
HELP_BODY = (
    '/more — another song for your last mood (or write "more" to me)\n'
    "/mood — what I read in your last selfie\n"
    "{mode} — lift your mood or match it (you start with {default})\n"
    "/history — the last 10 songs I sent you, with your ratings ({history} for more)\n"
    "/forget — delete everything I know about you\n"
    "/help — this message\n\n"
    "Rate any song with 👍 or 👎: my next picks lean toward what you liked.\n\n"
    "I never save your photos: I only look at them while I read your face. I keep the songs I "
    "sent you (with the emotion I read each time), your ratings, your latest reading and your "
    "lift/match choice — /forget deletes all of it."
)


@dataclass(frozen=True)
class CommandSyntax:
    """How a platform writes a command's argument, for texts that teach one: Telegram reads
    the words after the command ("/mode lift"), Discord named options ("/mode mode:lift")."""

    mode: str  # "{mode}" stands for the mode's name
    history: str  # "{count}" for a number

    def help_body(self, default_mode: moods.Mode) -> str:
        return HELP_BODY.format(
            mode=self.mode.format(mode="lift|match"),
            default=default_mode.value,
            history=self.history.format(count=50),
        )

    def mode_choice(self) -> str:
        return " or ".join(self.mode.format(mode=mode) for mode in moods.Mode)


CHAT_HINT = "/help shows everything else I can do."
SONG_LINK = "I don't take song requests 🙂 Send me a selfie and I'll pick a song for your mood."
LINK_NOT_PHOTO = "I can't open links. Please send me the photo itself, not a link to it."
NO_FACE = (
    "I couldn't find a face in that photo. Try a selfie in good light, "
    "facing the camera, with your face not too small in the picture."
)
NEED_SELFIE = "Send me a selfie first, so I know your mood — then /more has songs for it."
NO_READING = "I haven't read a selfie of yours yet — send me one and I'll tell you what I see."
STILL_READING = "I'm still reading your selfie — its song is on its way. Ask me again after it."
FORGET_NOT_YET = (
    "I haven't deleted anything yet — I'm still finishing something you just sent me. "
    "Send /forget again in a moment."
)
SLOW_DOWN = "Whoa, that's a lot of photos! Give me {wait} and try again."
SLOW_DOWN_SAID_FOR = 10.0  # seconds: the photos of a burst refused after the first go unanswered
TOO_MANY = "Whoa, that's a lot at once! Give me {wait} to catch up — then I'm all ears."
READING_WAIT = 10.0  # seconds /more, /mood, /history, /forget wait for work on its way
BUSY = "I'm very busy right now — please send your selfie again in a moment."
CONFIRM_FORGET = (
    "This deletes everything I know about you: the songs I sent (and the emotions I read for "
    "them), your ratings, your last reading and your settings. Are you sure?"
)
FORGOTTEN = "Done — I've forgotten everything about you. Send a selfie any time to start again."
KEPT = "Okay, I kept everything as it was."
NOTHING_TO_FORGET = "I don't have anything stored about you, so there's nothing to forget."
MODE_SET = {
    moods.Mode.LIFT: "Okay: I'll pick songs to lift your mood.",
    moods.Mode.MATCH: "Okay: I'll pick songs that match your mood.",
}
MODE_MEANS = {
    moods.Mode.LIFT: "I pick songs to lift your mood.",
    moods.Mode.MATCH: "I pick songs that match your mood.",
}
MODE_NOW = "You're in {mode} mode: {means} Use {choice} to change it."
CATALOG_EMPTY = (
    "I have no {mood} songs yet — my song catalog is still being set up. Please try again later."
)
RATED = {
    1: "Noted 👍 — I'll pick more songs like this one.",
    -1: "Noted 👎 — I'll pick fewer songs like this one.",
}
NOT_RATABLE = (
    "That song isn't in your list (it was someone else's, or you asked me to forget yours), "
    "so I can't rate it for you. Send me a selfie for songs of your own."
)
NO_HISTORY = "I haven't sent you any songs yet — send me a selfie to get one."
_LINK = re.compile(r"\b(?:https?://|www\.)\S", re.IGNORECASE)
# Words that ask for another song, answered as /more: "more", "another one please", "next!".
_MORE_WORDS = re.compile(
    r"/?(?:one\s+)?(?:more|another|next|again)(?:(?:\s+|\s*,\s*)(?:one|songs?|please|pls|plz))*"
    r"[\s.!?]*",
    re.IGNORECASE,
)


def asks_for_more(text: str) -> bool:
    """Whether words (without the bot's mention) ask for another song, as /more does; the
    punctuation a removed mention leaves ("@bot, more please") does not count."""
    return _MORE_WORDS.fullmatch(text.strip(" \t\n,:;-")) is not None


# A song shared from a music app (Spotify, Apple Music, YouTube Music, Deezer, SoundCloud).
_SONG_LINK = re.compile(
    r"\b(?:open\.spotify\.com|spotify\.link|music\.apple\.com|music\.youtube\.com|"
    r"deezer\.(?:com|page\.link)|soundcloud\.com)/",
    re.IGNORECASE,
)
HISTORY_DEFAULT = 10  # songs /history lists without a number
HISTORY_MAX = 100  # the most one /history lists
BAD_HISTORY_COUNT = (
    f"Tell me how many songs to list as a number, like /history 50 (1 to {HISTORY_MAX})."
)


@dataclass(frozen=True)
class Throttle:
    """:meth:`MoodLifter.throttle`'s and :meth:`MoodLifter.admit`'s verdict: serve the action
    or read the photo, or not, with what to say (None: it was said moments ago)."""

    allowed: bool
    notice: Notice | None = None


class MoodLifter:
    """The bot's core: holds the collaborators built once at start-up and closes them."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        reader: PhotoReader,
        *,
        executor: ThreadPoolExecutor | None = None,
        artwork: ArtResolver | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.reader = reader
        self.artwork = artwork  # None: every card is drawn (offline, e.g. in tests)
        self.recommender = Recommender(store, settings.recommender.default_mode)
        limits = settings.limits
        self._executor = executor or ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="moodlift-photo"
        )
        self._waiting = 0  # photos being read or waiting for a photo worker
        self._limiter = RateLimiter(limit=limits.photos_per_minute, window=60.0)
        self._actions = RateLimiter(limit=limits.actions_per_minute, window=60.0)
        self._told_to_slow_down = RateLimiter(limit=1, window=60.0)  # once a minute
        self._told_photos_slow_down = RateLimiter(limit=1, window=SLOW_DOWN_SAID_FOR)
        self._in_flight: dict[tuple[str, str], set[asyncio.Event]] = {}  # see _working()
        self._forgetting: dict[tuple[str, str], asyncio.Event] = {}  # see forget()

    @classmethod
    async def create(cls, settings: Settings) -> MoodLifter:
        """Open the store (upgrading its schema) and load the models, ready to serve."""
        store = await Store.open(settings)
        try:
            reader = await asyncio.to_thread(PhotoReader.from_settings, settings)  # ~0.3 s of CPU
        except BaseException:
            await store.close()
            raise
        artwork = ArtResolver.from_settings(settings.spotify, store)
        return cls(settings, store, reader, artwork=artwork)

    async def close(self) -> None:
        """Finish work in flight (the loop keeps serving meanwhile: answers to photos being
        read still go out), then release the pool and the database."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=False)
        if self.artwork is not None:
            await self.artwork.close()
        await self.store.close()

    # -- the use cases -----------------------------------------------------------------------

    def welcome(self) -> Notice:
        return Notice(NoticeKind.WELCOME, WELCOME)

    def help(self, how_to_send: str, syntax: CommandSyntax) -> Notice:
        """The commands and the privacy promise; ``how_to_send`` a photo and the ``syntax`` of
        a command's argument differ by platform."""
        body = syntax.help_body(self.recommender.default_mode)
        return Notice(NoticeKind.HELP, f"{how_to_send}\n\n{body}")

    def chat(self, text: str, how_to_send: str) -> Notice:
        """The answer to words: a song shared from a music app gets told the bot picks songs
        from selfies; another link (a GIF from a picker, a photo online) gets asked for the
        picture itself; anything else, how to send a selfie and where the help is (not the
        whole help: ~1,000 characters for every "hi" or "thanks!" is noise). Words asking for
        another song are the adapters' to answer as /more (:func:`asks_for_more`)."""
        if _SONG_LINK.search(text):
            return Notice(NoticeKind.HELP, SONG_LINK)
        if _LINK.search(text):
            return Notice(NoticeKind.BAD_IMAGE, LINK_NOT_PHOTO)
        return Notice(NoticeKind.HELP, f"{how_to_send}\n{CHAT_HINT}")

    def admit(self, user: UserRef, *, every_refusal: bool = False) -> Throttle:
        """Whether a photo from ``user`` will be read now, and if not, what to say.

        Adapters ask before they download the photo, so a flood costs no downloads. An admitted
        photo counts toward the user's photos per minute. Of a burst of refused photos (ten
        selfies sent "without grouping") only the first hears "slow down"; a photo refused
        :data:`SLOW_DOWN_SAID_FOR` seconds later hears it again. ``every_refusal``: a notice
        for each (an interaction that must be answered). "Busy" is said to every photo: each
        one is to be sent again.
        """
        key = (user.platform, user.user_id)
        if self._limiter.allow(key):
            busy = self._busy()
            return Throttle(allowed=busy is None, notice=busy)
        if not (every_refusal or self._told_photos_slow_down.allow(key)):
            return Throttle(allowed=False)
        wait = _seconds(self._limiter.retry_after(key))
        return Throttle(
            allowed=False, notice=Notice(NoticeKind.SLOW_DOWN, SLOW_DOWN.format(wait=wait))
        )

    def throttle(self, user: UserRef) -> Throttle:
        """Whether any action of ``user`` (a message, command or button) is served at all.

        Far above what a person does by hand (``limits.actions_per_minute``); beyond it the
        user is told once per minute and the rest is dropped unanswered, so a flood cannot
        keep the bot busy answering it.
        """
        key = (user.platform, user.user_id)
        if self._actions.allow(key):
            return Throttle(allowed=True)
        if not self._told_to_slow_down.allow(key):
            return Throttle(allowed=False)
        wait = _seconds(self._actions.retry_after(key))
        return Throttle(
            allowed=False, notice=Notice(NoticeKind.SLOW_DOWN, TOO_MANY.format(wait=wait))
        )

    @contextlib.asynccontextmanager
    async def reading(self, user: UserRef) -> AsyncIterator[None]:
        """Mark a photo of ``user`` as on its way (download, reading, answer): their /more,
        /mood, /history and /forget meanwhile wait for it (at most :data:`READING_WAIT`), so a
        /more sent right after a selfie answers for that selfie instead of asking for one, and
        comes after its card. Adapters hold it from an admitted photo's download to its answer."""
        async with self._working(user):
            yield

    @contextlib.asynccontextmanager
    async def _working(self, user: UserRef) -> AsyncIterator[None]:
        """Mark work that writes rows about ``user`` (a photo's reading, a /more pick, a rating,
        a mode) as on its way: /forget waits for it (:meth:`_after_work`), so nothing of it
        lands after the deletion — least of all under the id of the next new user, to whom
        SQLite gives the highest id again once it is free. Work that starts while a confirmed
        /forget deletes waits for it first (bounded), so a selfie sent after "Yes" is kept."""
        key = (user.platform, user.user_id)
        forgetting = self._forgetting.get(key)
        if forgetting is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READING_WAIT):
                    await forgetting.wait()
        done = asyncio.Event()
        self._in_flight.setdefault(key, set()).add(done)
        try:
            yield
        finally:
            done.set()
            pending = self._in_flight.get(key, set())
            pending.discard(done)
            if not pending:
                self._in_flight.pop(key, None)

    def _work_on_its_way(self, user: UserRef) -> tuple[asyncio.Event, ...]:
        """The work of ``user`` under way now (see :meth:`_working`)."""
        return tuple(self._in_flight.get((user.platform, user.user_id), ()))

    async def _after_work(
        self, user: UserRef, pending: tuple[asyncio.Event, ...] | None = None
    ) -> bool:
        """Wait (bounded) until the work of ``user`` on its way (``pending``; by default what
        is under way now) is done: their photos answered, their picks, ratings and settings
        written. False when the wait ran out with some of it still under way."""
        if pending is None:
            pending = self._work_on_its_way(user)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READING_WAIT):
                for done in pending:
                    await done.wait()
        return all(done.is_set() for done in pending)

    async def photo(self, user: UserRef, image: bytes) -> Reply:
        """Read the faces in ``image`` and answer with a song for their mood (or say why not:
        every refused photo hears it, as its caller has nothing else to say)."""
        admission = self.admit(user, every_refusal=True)
        if admission.notice is not None:  # a refusal always has one here
            return admission.notice
        async with self.reading(user):
            return await self.read_photo(user, image)

    async def read_photo(self, user: UserRef, image: bytes) -> Reply:
        """:meth:`photo` for a photo already :meth:`admit`-ted (downloaded since)."""
        busy = self._busy()
        if busy is not None:
            return busy
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            faces = await loop.run_in_executor(
                self._executor, self.reader.read, bytes(image), self._executor
            )
        except ImageError as error:
            log.info("unreadable photo from %s: %s", user.platform, error)
            return Notice(NoticeKind.BAD_IMAGE, error.user_message)
        finally:
            self._waiting -= 1
        if not faces:
            return Notice(NoticeKind.NO_FACE, NO_FACE)
        emotion, probabilities = group_emotion(faces)
        account, _ = await self.store.record_reading(
            user.platform, user.user_id, emotion, probabilities, len(faces)
        )
        return await self._card(account, emotion, probabilities[emotion], faces)

    async def more(self, user: UserRef) -> Reply:
        """Another song this user has not had, for the mood of their last selfie."""
        finished = await self._after_work(user)
        async with self._working(user):
            account, detection = await self.store.find_user_and_reading(user.platform, user.user_id)
            if account is None or detection is None:
                if not finished:  # a slow first selfie: its own song is still to come
                    return Notice(NoticeKind.STILL_READING, STILL_READING)
                return Notice(NoticeKind.NEED_SELFIE, NEED_SELFIE)
            return await self._card(account, detection.emotion, None, again=True)

    async def may_have_a_mood(self, user: UserRef) -> bool:
        """Whether :meth:`more` may answer with a song rather than "send a selfie first": a
        reading is stored, or a photo is on its way. Lets an adapter that must say at once
        who will see the answer keep that notice to the asker."""
        if self._work_on_its_way(user):
            return True
        _, detection = await self.store.find_user_and_reading(user.platform, user.user_id)
        return detection is not None

    async def mood(self, user: UserRef) -> Reply:
        """The last reading: emotion, all seven probabilities, a chart, and when."""
        finished = await self._after_work(user)
        account, detection = await self.store.find_user_and_reading(user.platform, user.user_id)
        if account is None or detection is None:
            if not finished:
                return Notice(NoticeKind.STILL_READING, STILL_READING)
            return Notice(NoticeKind.NEED_SELFIE, NO_READING)
        mood = moods.mood_for(
            detection.emotion, effective_mode(account, self.recommender.default_mode)
        )
        chart = await asyncio.to_thread(
            emotion_chart, detection.probabilities, detection.emotion, mood
        )
        return EmotionSummary(
            emotion=detection.emotion,
            confidence=detection.probabilities.get(detection.emotion, 0.0),
            probabilities=dict(detection.probabilities),
            mood=mood,
            detected_at=detection.detected_at,
            faces=detection.faces,
            chart_png=chart,
        )

    async def set_mode(self, user: UserRef, mode: str | None, syntax: CommandSyntax) -> Reply:
        """Set lift/match, or say the current mode when none is given."""
        if not mode:
            account = await self.store.find_user(user.platform, user.user_id)
            current = (account.mode if account else None) or self.recommender.default_mode
            return Notice(
                NoticeKind.MODE_SET,
                MODE_NOW.format(
                    mode=current,
                    means=MODE_MEANS[moods.Mode(current)],
                    choice=syntax.mode_choice(),
                ),
            )
        try:
            chosen = moods.parse_mode(mode)
        except ValueError:
            return Notice(NoticeKind.BAD_ARGUMENT, f"Please choose a mode: {syntax.mode_choice()}.")
        async with self._working(user):
            account = await self.store.get_or_create_user(user.platform, user.user_id)
            await self.store.set_mode(account.id, chosen.value)
        return Notice(NoticeKind.MODE_SET, MODE_SET[chosen])

    async def rate(self, user: UserRef, track_id: str, value: int) -> Notice:
        """Keep the user's 👍 (+1) or 👎 (-1) for a song they were sent; pressing again changes it.

        Whoever acts rates for themselves only, and only songs they were sent: a forged or
        borrowed button rates nothing.
        """
        async with self._working(user):
            account = await self.store.find_user(user.platform, user.user_id)
            if account is None or value not in RATED:
                return Notice(NoticeKind.NOT_RATABLE, NOT_RATABLE)
            try:
                await self.store.rate(account.id, track_id, value)
            except NotYourTrack:
                log.info("refused a rating of a track never sent to that %s user", user.platform)
                return Notice(NoticeKind.NOT_RATABLE, NOT_RATABLE)
        return Notice(NoticeKind.RATED, RATED[value])

    async def undelivered(self, user: UserRef, card: TrackCard) -> None:
        """The chat platform refused ``card`` (after its retries): the song was never heard, so
        it leaves the user's history and stays theirs to get. A send that timed out may have
        arrived after all, so callers withdraw only on a refusal."""
        account = await self.store.find_user(user.platform, user.user_id)
        if account is not None and await self.store.withdraw_delivery(account.id, card.track_id):
            log.info("withdrew a song a %s user never received", user.platform)

    async def history(self, user: UserRef, count: int | str | None = None) -> Reply:
        """The user's last songs (10, or ``count`` up to :data:`HISTORY_MAX`) with their ratings."""
        asked = _history_count(count)
        if asked is None:
            return Notice(NoticeKind.BAD_ARGUMENT, BAD_HISTORY_COUNT)
        await self._after_work(user)
        account = await self.store.find_user(user.platform, user.user_id)
        entries = await self.store.history(account.id, min(asked, HISTORY_MAX)) if account else []
        if not entries:
            return Notice(NoticeKind.NO_HISTORY, NO_HISTORY)
        items = tuple(
            HistoryItem(
                track_id=e.track.id,
                title=e.track.name,
                artist=e.track.artist,
                spotify_url=e.track.spotify_url,
                mood=e.mood,
                emotion=e.emotion,
                rating=e.rating,
                delivered_at=e.delivered_at,
            )
            for e in entries
        )
        return History(items, asked=asked, limit=HISTORY_MAX)

    async def forget(self, user: UserRef, confirmed: bool) -> Reply:
        """Delete every row about the user, after they confirmed (no question when there is
        nothing to delete: asking "are you sure?" would suggest there is).

        It first waits for the user's work on its way (:meth:`_working`): a reading or a pick
        that landed after the deletion would store the user again, or write under the id of
        someone else. Work sent meanwhile (a selfie or a /more after "Yes") waits for the
        deletion. A photo still on its way after the wait gets the question too: it is about
        to store something; a "Yes" while it is still on its way after the wait deletes
        nothing and says so (the user asks again after it), as a deletion then would be undone
        by what that work writes.
        """
        if not confirmed:
            finished = await self._after_work(user)
            stored = await self.store.find_user(user.platform, user.user_id) is not None
            if not stored and finished:
                return Notice(NoticeKind.FORGOTTEN, NOTHING_TO_FORGET)
            return Notice(NoticeKind.CONFIRM_FORGET, CONFIRM_FORGET)
        key = (user.platform, user.user_id)
        earlier = self._work_on_its_way(user)
        async with self._working(user):
            deleting = self._forgetting[key] = asyncio.Event()
            try:
                if not await self._after_work(user, earlier):
                    return Notice(NoticeKind.STILL_READING, FORGET_NOT_YET)
                removed = await self.store.forget(user.platform, user.user_id)
            finally:
                deleting.set()
                if self._forgetting.get(key) is deleting:
                    del self._forgetting[key]
        return Notice(NoticeKind.FORGOTTEN, FORGOTTEN if removed else NOTHING_TO_FORGET)

    async def keep(self, user: UserRef) -> Notice:
        """The answer to "keep my data": kept, or (after a /forget answered meanwhile, e.g. in
        another copy of the question) that nothing is stored any more."""
        account = await self.store.find_user(user.platform, user.user_id)
        return (
            Notice(NoticeKind.KEPT, KEPT)
            if account
            else Notice(NoticeKind.FORGOTTEN, NOTHING_TO_FORGET)
        )

    async def card_image(self, card: TrackCard) -> Picture:
        """The picture to upload for a card: album art if it comes within ~2 s, else drawn."""
        if self.artwork is not None:
            return (await self.artwork.card_art(card)).picture
        return await drawn_card(card)

    # -- helpers -----------------------------------------------------------------------------

    def _busy(self) -> Notice | None:
        """The "busy" notice while ``limits.queue_size`` photos are being read or waiting."""
        if self._waiting >= self.settings.limits.queue_size:
            return Notice(NoticeKind.BUSY, BUSY)
        return None

    async def _card(
        self,
        account: UserRecord,
        emotion: str,
        confidence: float | None,
        faces: tuple[FaceReading, ...] | list[FaceReading] = (),
        *,
        again: bool = False,
    ) -> Reply:
        try:
            card = await self.recommender.for_emotion(
                account, emotion, confidence=confidence, again=again
            )
        except CatalogEmpty as empty:
            return Notice(NoticeKind.CATALOG_EMPTY, CATALOG_EMPTY.format(mood=empty.mood))
        except UnknownUser:  # /forget ran while this answer was being made: start afresh
            return Notice(NoticeKind.NEED_SELFIE, NEED_SELFIE)
        return dataclasses.replace(card, faces=tuple(faces)) if faces else card


def _history_count(count: int | str | None) -> int | None:
    """How many songs /history should list; None when ``count`` is not a positive number."""
    if count is None or (isinstance(count, str) and not count.strip()):
        return HISTORY_DEFAULT
    if isinstance(count, str):
        text = count.strip()
        if not (text.isascii() and text.isdigit()):
            return None
        count = int(text) if len(text) <= 9 else HISTORY_MAX + 1  # more than ever listed
    return count if count >= 1 else None


def _seconds(wait: float) -> str:
    """A wait as people say it: "1 second", "12 seconds" (never less than one)."""
    seconds = max(1, round(wait))
    return f"{seconds} second{'s' if seconds != 1 else ''}"
