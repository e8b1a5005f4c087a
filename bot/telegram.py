"""The Telegram adapter: python-telegram-bot handlers around one :class:`MoodLifter`.

Each handler parses the update, calls one core method and renders the reply with
:mod:`bot.telegram_render`. Photos are downloaded into memory (never to disk), refused before
download when Telegram says they are too big, and answered with a reply to the triggering
message. In group chats the bot answers commands addressed to it, photos that mention it or
reply to it, and words that mention it; /mood and /history go to the asker's private chat;
answers stay in the message's forum topic; a group gets at most ~20 answers a minute.

Start it inside a running event loop (the runtime runs several adapters together)::

    application = build_application(service, settings.telegram,
                                    max_image_bytes=settings.limits.max_image_bytes)
    await start_polling(application, poll_timeout=settings.telegram.poll_timeout)
    ...
    await stop_polling(application)

``application.run_polling()`` works too when Telegram is the only thing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import operator
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from telegram import (
    BotCommand,
    CallbackQuery,
    LinkPreviewOptions,
    Message,
    PhotoSize,
    ReactionTypeEmoji,
    ReplyParameters,
    Update,
)
from telegram.constants import (
    ChatAction,
    ChatMemberStatus,
    ChatType,
    MessageEntityType,
    ParseMode,
)
from telegram.error import BadRequest, Forbidden, TelegramError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackContext,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    MessageHandler,
    MessageReactionHandler,
    TypeHandler,
    filters,
)

from bot import telegram_render as tr
from bot import wording
from bot.album_order import AlbumOrder
from bot.presses import PressesInFlight
from bot.telegram_http import RedactToken, RetryAfterLimiter, RetryingRequest
from core.config import MAX_IMAGE_BYTES, TelegramSettings
from core.errors import ConfigError
from core.ratelimit import RateLimiter
from core.replies import History, Notice, NoticeKind, Reply, TrackCard
from core.service import (
    HELP_SEND,
    HISTORY_MAX,
    CommandSyntax,
    MoodLifter,
    Throttle,
    UserRef,
    asks_for_more,
)

log = logging.getLogger(__name__)

PLATFORM = "telegram"
# "sending a photo…" only for an answer that is not ready within a second: the limit beyond which
# a user starts to wait (a quicker answer needs no indicator, and it saves a Bot API call).
ALERT_LIMIT = 200  # characters Telegram shows in a button's toast or alert
CHAT_ACTION_AFTER = 1.0  # seconds
CHAT_ACTION_EVERY = 4.5  # seconds; Telegram shows an action for about five
# Telegram answers an upload only once it has processed the picture; PTB's default 5 s read
# timeout then reports a card that is on its way as failed.
SEND_READ_TIMEOUT = 20.0  # seconds
GROUP_ANSWERS_PER_MINUTE = 20
"""Telegram lets a bot send about 20 messages a minute into one group; beyond that it answers
429 and holds every send to that group, so the group's other members would wait too."""
# The bot introduces itself once in this many seconds to whoever added it to a group: the join
# and the adder's /start arrive together when it is added with a t.me/<bot>?startgroup link.
GREETED_FOR = 60.0
GATE_GROUP = -1  # the handler group of :func:`gate`, which runs before every other handler
# What the bot asks Telegram for; MY_CHAT_MEMBER tells it it was added to a group,
# MESSAGE_REACTION of a 👍 or 👎 set on a card (in a private chat; in a group only to an admin).
UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY, Update.MY_CHAT_MEMBER, Update.MESSAGE_REACTION]
# Reactions that rate a card's song as its 👍 / 👎 buttons do.
LIKE_REACTIONS = frozenset({"👍", "❤", "🔥", "🥰", "😍", "👏", "💯", "❤‍🔥", "🤩"})
DISLIKE_REACTIONS = frozenset({"👎", "💩", "🤮", "🥱", "😴"})
CARDS_REMEMBERED = 50_000  # cards whose message a reaction can be traced to, oldest forgotten

COMMANDS = (
    BotCommand("start", "What I do"),
    BotCommand("help", "Commands and privacy"),
    BotCommand("more", "Another song for your last mood"),
    BotCommand("mood", "What I read in your last selfie"),
    BotCommand("mode", "lift or match: cheer you up, or stay with the feeling"),
    BotCommand("history", "The songs I sent you, with your ratings (/history 50 for more)"),
    BotCommand("forget", "Delete everything I know about you"),
)

_OUR_COMMANDS = frozenset(command.command for command in COMMANDS)


class MoodContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """The callback context, with the injected service and limits typed."""

    @property
    def service(self) -> MoodLifter:
        """The core service this application serves."""
        return self.bot_data["service"]  # type: ignore[no-any-return]

    @property
    def uploaded(self) -> UploadedPhotos | None:
        """The ``file_id`` of pictures already uploaded (None: upload every time)."""
        return self.bot_data.get("uploaded")  # type: ignore[no-any-return]

    @property
    def max_image_bytes(self) -> int:
        """Photos and files above this are refused before download."""
        return int(self.bot_data["max_image_bytes"])

    @property
    def chat_action_after(self) -> float:
        """Seconds an answer may take before the chat shows "sending a photo…"."""
        return float(self.bot_data["chat_action_after"])

    @property
    def presses(self) -> PressesInFlight:
        """The button presses being handled right now (a double tap is one press)."""
        return self.bot_data.setdefault("presses", PressesInFlight())  # type: ignore[no-any-return]

    @property
    def group_answers(self) -> RateLimiter:
        """Answers per group chat in the last minute (see :data:`GROUP_ANSWERS_PER_MINUTE`)."""
        return self.bot_data.setdefault(  # type: ignore[no-any-return]
            "group_answers", RateLimiter(limit=GROUP_ANSWERS_PER_MINUTE, window=60.0)
        )

    @property
    def group_told(self) -> RateLimiter:
        """Groups told in the last minute that they keep the bot busy (once a minute each)."""
        return self.bot_data.setdefault(  # type: ignore[no-any-return]
            "group_told", RateLimiter(limit=1, window=60.0)
        )

    @property
    def photoless_chats(self) -> PhotolessChats:
        """Chats that refuse the bot's photos (see :class:`PhotolessChats`)."""
        return self.bot_data.setdefault("photoless_chats", PhotolessChats())  # type: ignore[no-any-return]

    @property
    def album_order(self) -> AlbumOrder:
        """The photos of albums being handled, answered in the order they were sent."""
        return self.bot_data.setdefault("album_order", AlbumOrder())  # type: ignore[no-any-return]

    @property
    def greetings(self) -> RateLimiter:
        """Groups the bot introduced itself to lately (see :data:`GREETED_FOR`)."""
        return self.bot_data.setdefault(  # type: ignore[no-any-return]
            "greetings", RateLimiter(limit=1, window=GREETED_FOR)
        )

    @property
    def card_messages(self) -> OrderedDict[tuple[int, int], tuple[int, str]]:
        """Whose each recent card is and its track, by (chat, message): a reaction names only
        its message. In memory (/forget drops a user's): a card sent before a restart is rated
        with its buttons only."""
        return self.bot_data.setdefault("card_messages", OrderedDict())  # type: ignore[no-any-return]

    @property
    def noticed_albums(self) -> OrderedDict[tuple[str, str], None]:
        """(album, notice) pairs already answered: an album (media group) hears each notice
        once (see ``_first_of_album``), recent last."""
        return self.bot_data.setdefault("noticed_albums", OrderedDict())  # type: ignore[no-any-return]


MoodApplication = Application[Any, MoodContext, Any, Any, Any, Any]


class UploadedPhotos:
    """The ``file_id`` Telegram gave each picture we uploaded, by the picture's content.

    Many people get the same song, so the same album art or drawn card; sending its
    ``file_id`` again costs Telegram nothing and us no upload (a multipart body of ~50-300 KB
    per card otherwise). Keyed by a digest of the bytes, so a changed picture is never sent
    by an old id. Least recently used ids go first beyond ``capacity``.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[bytes, str] = OrderedDict()

    @staticmethod
    def _key(data: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=16).digest()

    def get(self, data: bytes) -> str | None:
        key = self._key(data)
        file_id = self._ids.get(key)
        if file_id is not None:
            self._ids.move_to_end(key)
        return file_id

    def remember(self, data: bytes, sent: Message) -> None:
        """Keep the id of the largest size Telegram made of the uploaded picture."""
        if not sent.photo:
            return
        self._ids[self._key(data)] = sent.photo[-1].file_id
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def forget(self, data: bytes) -> None:
        self._ids.pop(self._key(data), None)


class PhotolessChats:
    """Chats where Telegram refused the bot's photos for want of the right to send them (a
    group that allows text only), for ``ttl`` seconds: a card there goes as text at once,
    instead of after a refused photo each time. An admin's change of rights shows after ttl."""

    def __init__(self, ttl: float = 600.0, capacity: int = 4096) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._until: OrderedDict[int, float] = OrderedDict()

    def refuses(self, chat_id: int) -> bool:
        until = self._until.get(chat_id)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[chat_id]
            return False
        return True

    def remember(self, chat_id: int) -> None:
        self._until[chat_id] = time.monotonic() + self.ttl
        self._until.move_to_end(chat_id)
        while len(self._until) > self.capacity:
            self._until.popitem(last=False)


def _no_photo_rights(error: BadRequest) -> bool:
    """Telegram's "not enough rights to send photos to the chat"."""
    return "not enough rights to send photo" in str(error).lower()


# --- filters ---------------------------------------------------------------------------------


RECENT_ALBUMS = 1024  # albums (media groups) remembered for each purpose, oldest forgotten first


def _remember(
    recent: OrderedDict[Any, Any], key: Any, value: Any = None, *, keep: int = RECENT_ALBUMS
) -> None:
    """Add ``key`` to a bounded memory of recent ones (by default an album: its photos come as
    separate messages), forgetting the oldest beyond ``keep``."""
    recent[key] = value
    while len(recent) > keep:
        recent.popitem(last=False)


ALBUM_SPREAD = 30.0  # seconds within which an album's messages arrive (they come at once)
ALBUM_SIZE = 10  # Telegram's most photos in one album
ALBUM_ITEMS_WAIT = 2.0  # seconds a video of an album waits to learn whether it came with photos


class _AddressedToBot(filters.MessageFilter):
    """Private chats; in groups, a text/caption that mentions the bot, or (``replies``) a reply
    to one of its messages — and then also the other photos of an album so addressed (Telegram
    sends each photo of an album as a message, the caption on one of them, usually the first).

    Photos of an album that came before the one naming the bot are kept (the messages, no
    picture, at most :data:`ALBUM_SPREAD` seconds) so that :func:`photo` can read them too.
    """

    def __init__(self, *, replies: bool) -> None:
        super().__init__()
        self.replies = replies
        self._albums: OrderedDict[tuple[int, str], None] = OrderedDict()  # addressed, recent last
        self._unaddressed: OrderedDict[tuple[int, str], dict[int, Message]] = OrderedDict()

    def filter(self, message: Message) -> bool:
        if message.chat.type == ChatType.PRIVATE:
            return True
        addressed = self._names_bot(message)
        album = message.media_group_id
        if not self.replies or album is None:
            return addressed
        key = (message.chat.id, album)
        if not addressed:
            if key in self._albums:
                return True
            kept = self._unaddressed.setdefault(key, {})
            if len(kept) < ALBUM_SIZE:
                kept[message.message_id] = message
            self._unaddressed.move_to_end(key)
            self._forget_unaddressed(before=message.date.timestamp() - ALBUM_SPREAD)
            return False
        _remember(self._albums, key)
        return True

    def _forget_unaddressed(self, before: float) -> None:
        """Drop the kept photos of albums not added to since ``before`` (a timestamp), and the
        oldest beyond :data:`RECENT_ALBUMS`: other people's messages are not kept longer."""
        albums = self._unaddressed
        while albums and (
            len(albums) > RECENT_ALBUMS
            or max(m.date.timestamp() for m in next(iter(albums.values())).values()) < before
        ):
            albums.popitem(last=False)

    def earlier_of_album(self, message: Message) -> list[Message]:
        """The album's photos that came before ``message`` named the bot (once: they are
        forgotten here), oldest first; none older than :data:`ALBUM_SPREAD` seconds."""
        album = message.media_group_id
        if album is None:
            return []
        kept = self._unaddressed.pop((message.chat.id, album), {})
        recent = message.date.timestamp() - ALBUM_SPREAD
        return [m for _, m in sorted(kept.items()) if m.date.timestamp() >= recent]

    def _names_bot(self, message: Message) -> bool:
        bot = message.get_bot()
        replied = message.reply_to_message
        if (
            self.replies
            and replied is not None
            and replied.from_user is not None
            and replied.from_user.id == bot.id
        ):
            return True
        wanted = f"@{bot.username}".casefold()
        kinds = [MessageEntityType.MENTION, MessageEntityType.TEXT_MENTION]
        found = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
        return any(
            (entity.type == MessageEntityType.MENTION and text.casefold() == wanted)
            or (entity.user is not None and entity.user.id == bot.id)
            for entity, text in found.items()
        )


def _command_typed(message: Message) -> tuple[str, str]:
    """``/cmd@name`` as typed: (``cmd``, ``name``), the name "" for a bare ``/cmd``."""
    command = (message.text or "").split(maxsplit=1)[0]
    name, _, addressee = command.removeprefix("/").partition("@")
    return name, addressee


def _command_parts(message: Message) -> tuple[str, str | None]:
    """``/cmd@name`` as (``cmd``, whom it names), casefolded: "" for a bare ``/cmd``, None if
    ``@name`` is us."""
    name, addressee = _command_typed(message)
    ours = (message.get_bot().username or "").casefold()
    return name.casefold(), None if addressee.casefold() == ours else addressee.casefold()


class _CommandForUs(filters.MessageFilter):
    """Any command in private; in groups only ``/cmd@ThisBot`` (a bare one may be another's)."""

    def filter(self, message: Message) -> bool:
        return message.chat.type == ChatType.PRIVATE or _command_parts(message)[1] is None


class _CommandNotForAnother(filters.MessageFilter):
    """A command the command handlers may answer: ``/cmd@ThisBot``, any bare one in private,
    in groups a bare one of ours (a bare ``/roll`` there is another bot's, not ours to count)."""

    def filter(self, message: Message) -> bool:
        name, addressee = _command_parts(message)
        if addressee != "":
            return addressee is None
        return message.chat.type == ChatType.PRIVATE or name in _OUR_COMMANDS


NEW_MESSAGE = filters.UpdateType.MESSAGE
ADDRESSED = _AddressedToBot(replies=True)  # a photo replying to a card is a selfie for us
MENTIONED = _AddressedToBot(replies=False)  # "haha" or a sticker under a card is chatter
COMMAND_FOR_US = filters.COMMAND & _CommandForUs()
COMMAND_NOT_FOR_ANOTHER = filters.COMMAND & _CommandNotForAnother()
# Some clients send an image file as application/octet-stream, or with no type at all: then its
# name says what it is.
_IMAGE_FILE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "heic", "heif", "avif")


class _UntypedDocument(filters.MessageFilter):
    """A file whose MIME type the client did not give at all (the Bot API's is optional)."""

    def filter(self, message: Message) -> bool:
        return message.document is not None and message.document.mime_type is None


UNTYPED_IMAGE = (
    filters.Document.MimeType("application/octet-stream") | _UntypedDocument()
) & functools.reduce(
    operator.or_,
    (filters.Document.FileExtension(suffix) for suffix in _IMAGE_FILE_SUFFIXES),
)
PHOTO_INPUT = (filters.PHOTO | filters.Document.IMAGE | UNTYPED_IMAGE) & ~filters.ANIMATION
NOT_A_PHOTO = (
    filters.Sticker.ALL
    | filters.ANIMATION
    | filters.VOICE
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.AUDIO
    | filters.Document.ALL
    | filters.LOCATION
    | filters.CONTACT
    | filters.VENUE
    | filters.POLL
    | filters.Dice.ALL
    | filters.STORY
    | filters.PAID_MEDIA
    | filters.GAME
    | filters.CHECKLIST
)


# --- building and running --------------------------------------------------------------------


def build_application(
    service: MoodLifter,
    settings: TelegramSettings,
    *,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    chat_action_after: float = CHAT_ACTION_AFTER,
) -> MoodApplication:
    """The bot, wired to ``service``; nothing is contacted until it is initialized."""
    if not settings.token:
        raise ConfigError("telegram.token is not set (MOODLIFT_TELEGRAM_TOKEN)")
    token = settings.token.get()
    RedactToken(token).install()
    application: MoodApplication = (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.api_url)
        .base_file_url(settings.file_url)
        .context_types(ContextTypes(context=MoodContext))
        .request(
            RetryingRequest(
                connection_pool_size=64, read_timeout=SEND_READ_TIMEOUT, media_write_timeout=60.0
            )
        )
        .rate_limiter(RetryAfterLimiter())
        .concurrent_updates(True)
        .post_init(_post_init)
        .build()
    )
    application.bot_data["service"] = service
    application.bot_data["max_image_bytes"] = max_image_bytes
    application.bot_data["chat_action_after"] = chat_action_after
    application.bot_data["uploaded"] = UploadedPhotos()

    application.add_handler(TypeHandler(Update, gate), group=GATE_GROUP)
    for name, callback in (
        ("start", start),
        ("help", help_command),
        ("more", more),
        ("mood", mood),
        ("mode", mode),
        ("history", history),
        ("forget", forget),
    ):
        application.add_handler(CommandHandler(name, callback, filters=NEW_MESSAGE))
    application.add_handler(MessageHandler(COMMAND_FOR_US & NEW_MESSAGE, unknown_command))
    application.add_handler(MessageHandler(PHOTO_INPUT & NEW_MESSAGE & ADDRESSED, photo))
    application.add_handler(MessageHandler(NOT_A_PHOTO & NEW_MESSAGE & MENTIONED, not_a_photo))
    application.add_handler(
        MessageHandler(filters.TEXT & ~filters.COMMAND & NEW_MESSAGE & MENTIONED, chat_text)
    )
    application.add_handler(ChatMemberHandler(joined_group, ChatMemberHandler.MY_CHAT_MEMBER))
    application.add_handler(MessageReactionHandler(reaction))
    application.add_handler(CallbackQueryHandler(button, pattern=tr.CALLBACK_PATTERN))
    application.add_handler(CallbackQueryHandler(stale_button))
    application.add_error_handler(on_error)
    return application


async def start_polling(application: MoodApplication, *, poll_timeout: float = 30.0) -> None:
    """Initialize, register the commands, and start fetching updates (returns at once)."""
    await application.initialize()
    if application.post_init is not None:  # run_polling calls it; so must we
        await application.post_init(application)
    await application.start()
    assert application.updater is not None
    await application.updater.start_polling(
        timeout=poll_timeout, allowed_updates=UPDATES, drop_pending_updates=False
    )
    log.info("Telegram bot @%s is polling", application.bot.username)


async def stop_polling(application: MoodApplication) -> None:
    """Stop fetching, let the updates in flight finish, and close the HTTP clients."""
    if application.updater is not None and application.updater.running:
        try:
            await application.updater.stop()
        except TelegramError as error:  # the polling that gave up (a revoked token) says so
            log.debug("telegram: polling had ended with %s", type(error).__name__)
    if application.running:
        await application.stop()
    await application.shutdown()


@contextlib.asynccontextmanager
async def polling(
    application: MoodApplication, *, poll_timeout: float = 30.0
) -> AsyncIterator[MoodApplication]:
    """``async with polling(app):`` runs the bot for the block's duration."""
    await start_polling(application, poll_timeout=poll_timeout)
    try:
        yield application
    finally:
        await stop_polling(application)


async def _post_init(application: MoodApplication) -> None:
    await application.bot.set_my_commands(COMMANDS)


# --- handlers --------------------------------------------------------------------------------


async def gate(update: Update, context: MoodContext) -> None:
    """Before any other handler: drop a flood, keep a group within the ~20 answers a minute
    Telegram takes (ratings and /forget's edits do not count), and turn away messages sent as
    a chat.

    Only what the bot would answer counts toward the flood limit (group chatter it ignores
    does not). A message an anonymous group admin or a channel sends carries Telegram's
    placeholder user, the same for every such sender, so it cannot be told whose it is: such
    people are asked to write in private instead of sharing one profile.
    """
    message, query = update.effective_message, update.callback_query
    if query is None:
        if message is not None and message.is_automatic_forward:
            raise ApplicationHandlerStop  # a channel's post copied to its group: nobody asked
        if message is None or not _for_us(update):
            return  # not for the bot: the handlers ignore it too
        if message.sender_chat is not None:
            chat = UserRef(platform=PLATFORM, user_id=f"chat:{message.sender_chat.id}")
            verdict = context.service.throttle(chat)
            named = ADDRESSED.check_update(update) or COMMAND_NOT_FOR_ANOTHER.check_update(update)
            if verdict.allowed and named:
                # Once for an album, and within the group's minute like any answer.
                if _first_of_album(context, message, "write in private") and _group_has_room(
                    update, context
                ):
                    await _answer(update, context, wording.WRITE_IN_PRIVATE)
            elif verdict.notice is not None:
                await _answer(update, context, verdict.notice)
            raise ApplicationHandlerStop
    if update.effective_user is None:
        return
    verdict = context.service.throttle(_user(update))
    if verdict.allowed:
        if _group_has_room(update, context):
            return
        verdict = Throttle(allowed=False, notice=_group_full_notice(update, context))
    if query is not None:  # an alert once, else just stop the button's spinner
        notice = verdict.notice
        await _acknowledge(query, notice.text if notice else None, alert=notice is not None)
    elif verdict.notice is not None:
        await _answer(update, context, verdict.notice)
    raise ApplicationHandlerStop


def _group_has_room(update: Update, context: MoodContext) -> bool:
    """Whether one more answer fits the group's minute (always in a private chat, and for a
    button press that posts nothing: a rating's toast, /forget's edit). "Another song" only
    looks: most presses by someone without a selfie get an alert and post nothing, so its
    song takes the group's slot when it is posted (:func:`_pressed`)."""
    chat, query = update.effective_chat, update.callback_query
    if chat is None or not _in_group(update):
        return True
    if query is not None:
        return query.data != tr.MORE or context.group_answers.retry_after(chat.id) == 0
    return context.group_answers.allow(chat.id)


def _group_full_notice(update: Update, context: MoodContext) -> Notice | None:
    """The "this group keeps me busy" notice, once a minute per group."""
    chat = update.effective_chat
    assert chat is not None
    told = context.group_told.allow(chat.id)
    return Notice(NoticeKind.SLOW_DOWN, wording.GROUP_FULL) if told else None


def _for_us(update: Update) -> bool:
    """A message some handler would answer: anything in private, a command not addressed to
    another bot, or in a group a mention of the bot or a photo replying to it."""
    message = update.effective_message
    if MENTIONED.check_update(update):
        if message is not None and message.media_group_id is not None:
            ADDRESSED.check_update(update)  # its album is for us, whatever this item is (a video)
        return True
    return bool(
        COMMAND_NOT_FOR_ANOTHER.check_update(update)
        or (PHOTO_INPUT & ADDRESSED).check_update(update)
    )


async def start(update: Update, context: MoodContext) -> None:
    """Say hello and what the bot does; ``/start mood`` or ``/start history[_N]`` (the link a
    group gives to someone the bot could not write to first) answers that command at once."""
    command, _, argument = (context.args or [""])[0].partition("_")
    if command in _START_LINKS:
        context.args = [argument] if argument else []  # the payload is the command (and count)
        await _START_LINKS[command](update, context)
        return
    if _in_group(update) and not context.greetings.allow(_greeted(update)):
        return  # it has just introduced itself here to this user (see joined_group)
    await _answer(update, context, context.service.welcome())


async def joined_group(update: Update, context: MoodContext) -> None:
    """Added to a group: say once how a selfie reaches the bot there (it sees only what is
    addressed to it, so a plain selfie in the group would go unanswered)."""
    change = update.my_chat_member
    if change is None or change.chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
        return
    present = (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR)
    if change.old_chat_member.status in present or change.new_chat_member.status not in present:
        return  # promoted, demoted, restricted, removed: nothing to introduce
    # Added with a t.me/<bot>?startgroup link, the bot also gets the adder's /start: one hello.
    if not context.greetings.allow(_greeted(update)):
        return
    await _answer(update, context, f"{wording.GROUP_HELLO} {_how_to_send(update, context)}")


def _greeted(update: Update) -> tuple[int, int]:
    """Whom a hello in a group is for: the group, and who added the bot or sent /start."""
    chat, user = update.effective_chat, update.effective_user
    return (chat.id if chat else 0, user.id if user else 0)


async def reaction(update: Update, context: MoodContext) -> None:
    """A 👍 (or ❤, 🔥, ...) or 👎 reaction set on one of the bot's cards rates its song, as the
    card's buttons do, silently: the reaction itself shows it. Taking a reaction back keeps the
    rating (👎 then changes it)."""
    change = update.message_reaction
    if change is None or change.user is None:
        return  # an anonymous admin's or a channel's reaction: nobody's to keep
    owner, track = context.card_messages.get((change.chat.id, change.message_id), (None, ""))
    if owner != change.user.id:
        return  # not a card, one sent before a restart, or someone else's song
    before = {r.emoji for r in change.old_reaction if isinstance(r, ReactionTypeEmoji)}
    added = {r.emoji for r in change.new_reaction if isinstance(r, ReactionTypeEmoji)} - before
    value = 1 if added & LIKE_REACTIONS else -1 if added & DISLIKE_REACTIONS else None
    if value is None or not context.service.throttle(_user(update)).allowed:
        return
    await context.service.rate(_user(update), track, value)


async def help_command(update: Update, context: MoodContext) -> None:
    """List the commands and the privacy promise."""
    await _answer(update, context, context.service.help(_how_to_send(update, context), SYNTAX))


async def chat_text(update: Update, context: MoodContext) -> None:
    """Plain words in a private chat, or mentioning the bot in a group: "more" (or "another
    song please") is /more, anything else hears what the bot understands."""
    message = update.effective_message
    text = message.text if message is not None and message.text else ""
    mention = re.compile(rf"@{re.escape(context.bot.username)}\b", re.IGNORECASE)
    if asks_for_more(mention.sub(" ", text)):
        await more(update, context)
        return
    await _answer(update, context, context.service.chat(text, _how_to_send(update, context)))


async def unknown_command(update: Update, context: MoodContext) -> None:
    """A command the bot does not have: say so, then what it does have."""
    name, addressee = _command_typed(_message(update))
    _, other_bot = _command_parts(_message(update))  # None when it names us
    help_ = context.service.help(_how_to_send(update, context), SYNTAX)
    named = _COMMAND_NAME.fullmatch(name)  # never echo what Telegram would not call a command
    if named and other_bot and _COMMAND_NAME.fullmatch(addressee):  # in private: /more@OtherBot
        unknown = wording.COMMAND_FOR_ANOTHER_BOT.format(command=f"/{name}", bot=addressee)
    else:
        unknown = wording.UNKNOWN_COMMAND.format(command=f"/{name}") if named else ""
    await _answer(update, context, dataclasses.replace(help_, text=unknown + help_.text))


# Telegram reads the words after a command as its argument: "/mode lift".
SYNTAX = CommandSyntax(mode="/mode {mode}", history="/history {count}")
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")  # the letters Telegram allows in a command


def _in_group(update: Update) -> bool:
    chat = update.effective_chat
    return chat is not None and chat.type != ChatType.PRIVATE


def _how_to_send(update: Update, context: MoodContext) -> str:
    """How to send a selfie here: in a group the bot sees only photos addressed to it."""
    if not _in_group(update):
        return HELP_SEND
    return wording.TELEGRAM_GROUP_HOW_TO_SEND.format(bot=context.bot.username)


async def more(update: Update, context: MoodContext) -> None:
    """Another unseen song for the user's last mood."""
    await _answer(update, context, await context.service.more(_user(update)))


async def mood(update: Update, context: MoodContext) -> None:
    """What the bot read in the user's last selfie (in a group: told in private)."""
    await _answer_in_private(update, context, await context.service.mood(_user(update)), "mood")


async def mode(update: Update, context: MoodContext) -> None:
    """``/mode lift|match``: cheer the user up, or stay with the feeling."""
    wanted = " ".join(context.args or ()) or None
    await _answer(update, context, await context.service.set_mode(_user(update), wanted, SYNTAX))


async def history(update: Update, context: MoodContext) -> None:
    """``/history [N]``: the last songs sent to the user, with links, emotion and rating."""
    count = " ".join(context.args or ()) or None
    reply = await context.service.history(_user(update), count)
    # The private chat's link keeps the number the core read: /start history_50 lists 50 too.
    link = "history"
    if count and isinstance(reply, History):
        link = f"history_{min(reply.asked, HISTORY_MAX)}"
    await _answer_in_private(update, context, reply, link)


_START_LINKS = {"mood": mood, "history": history}  # /start payloads: the private answers


async def forget(update: Update, context: MoodContext) -> None:
    """Ask to confirm deleting what is stored about the user, or say at once that nothing is."""
    await _answer(update, context, await context.service.forget(_user(update), confirmed=False))


async def photo(update: Update, context: MoodContext) -> None:
    """A selfie (compressed photo or image file): read the mood, answer with a song (the
    photos of an album in the order they were sent, see :mod:`bot.album_order`)."""
    message = _message(update)
    where = (message.chat_id, message.media_group_id, message.message_id)
    if message.media_group_id is not None:
        _remember(context.noticed_albums, (message.media_group_id, _HAS_PHOTOS))
    await _read_earlier_of_album(update, context)
    async with context.album_order.handling(*where):
        await _photo(update, context, message, where)


async def _read_earlier_of_album(update: Update, context: MoodContext) -> None:
    """In a group, an album's photos sent before the item that names the bot: handled like new
    ones (through the flood gate too), now that the album is known to be for us."""
    if _in_group(update):
        for earlier in ADDRESSED.earlier_of_album(_message(update)):
            await context.update_queue.put(Update(update.update_id, message=earlier))


async def _photo(
    update: Update, context: MoodContext, message: Message, where: tuple[int, str | None, int]
) -> None:
    if _forwarded_from_me(message):  # one of the bot's own cards, sent back to it
        await _album_notice(update, context, where, "own card", _OWN_CARD)
        return
    file_id = _pick_file(message, context.max_image_bytes)
    if file_id is None:
        await _album_notice(update, context, where, "too big")
        return
    admission = context.service.admit(_user(update))  # before the download a flood would cost
    if not admission.allowed:
        if admission.notice is not None:
            await _album_notice(update, context, where, "refused", admission.notice)
        return
    async with (
        context.service.reading(_user(update)),
        _showing(context, message.chat_id, ChatAction.UPLOAD_PHOTO, _topic(message)),
    ):
        image = await _download(context, file_id)
        if image is None:
            await _album_notice(update, context, where, "too big")
            return
        reply = await context.service.read_photo(_user(update), image)
        await context.album_order.turn(*where)
        if (
            isinstance(reply, Notice)
            and reply.kind in _SAID_ONCE_PER_ALBUM
            and not _first_of_album(context, message, reply.text)
        ):
            return  # "no face" for an album's third photo too: said once
        await _answer(update, context, reply)


_OWN_CARD = Notice(NoticeKind.NO_FACE, wording.OWN_CARD)


def _forwarded_from_me(message: Message) -> bool:
    """A forward of one of the bot's own messages (a card's album art is no selfie)."""
    origin = message.forward_origin
    sender = getattr(origin, "sender_user", None)
    return sender is not None and sender.id == message.get_bot().id


async def _album_notice(
    update: Update,
    context: MoodContext,
    where: tuple[int, str | None, int],
    notice: str,
    reply: Reply | None = None,
) -> None:
    """A notice for a photo not read ("too big" or ``reply``, the refusal): once for an album,
    after the answers to its earlier photos."""
    if _first_of_album(context, _message(update), notice):
        await context.album_order.turn(*where)
        await _answer(update, context, reply or wording.too_big(context.max_image_bytes))


# What a read says of the photo itself; "busy" asks for that photo again, so each one hears it.
_SAID_ONCE_PER_ALBUM = frozenset({NoticeKind.NO_FACE, NoticeKind.BAD_IMAGE})


def _first_of_album(context: MoodContext, message: Message, notice: str) -> bool:
    """Whether to give ``notice`` ("not a photo", "too big", "no face", ...) for this
    message: once for an album (each of its items comes as its own message, and the same
    words four times over are noise), every time for single messages."""
    album = message.media_group_id
    if album is None:
        return True
    key = (album, notice)
    noticed = context.noticed_albums
    if key in noticed:
        return False
    _remember(noticed, key)
    return True


async def not_a_photo(update: Update, context: MoodContext) -> None:
    """A sticker, GIF, voice, video or non-image file: ask for a photo instead (once for an
    album of them). A video in an album with selfies gets no word: the selfies are answered
    (and a video that names the bot makes its album's photos ours)."""
    message = _message(update)
    if message.media_group_id is not None:
        await _read_earlier_of_album(update, context)
        await asyncio.sleep(ALBUM_ITEMS_WAIT)  # the album's other items come at the same time
        if (message.media_group_id, _HAS_PHOTOS) in context.noticed_albums:
            return
    if _first_of_album(context, message, "not a photo"):
        await _answer(update, context, wording.NOT_A_PHOTO)


_HAS_PHOTOS = "has photos"  # in MoodContext.noticed_albums: an album with a photo for us


async def button(update: Update, context: MoodContext) -> None:
    """A known inline button: "Another song", 👍 / 👎, or the answer to /forget. A second press
    of the same button by the same user while the first is handled (a double tap) only stops
    its spinner: one song, and /forget's "Done" is not overwritten. Another button of the same
    card counts (👍 right after "Another song", 👎 to change one's mind), except the other
    answer to the same /forget question."""
    query = update.callback_query
    assert query is not None and context.match is not None
    message = query.message
    which = "forget" if context.match["owner"] is not None else query.data
    key = (message.chat.id, message.message_id, query.from_user.id, which) if message else query.id
    with context.presses.first(key) as first:
        if not first:
            await _acknowledge(query)
            return
        await _pressed(update, context, query)


async def _pressed(update: Update, context: MoodContext, query: CallbackQuery) -> None:
    assert context.match is not None
    owner = context.match["owner"]
    rating = context.match["rating"]
    if rating is not None:  # 👍 / 👎: for whoever pressed it, acknowledged with a toast
        value = tr.RATINGS[rating]
        reply = await context.service.rate(_user(update), context.match["track"], value)
        # A refusal explains itself in more words than a toast holds: an alert, read to the end.
        await _acknowledge(query, reply.text, alert=reply.kind is NoticeKind.NOT_RATABLE)
    elif owner is None:  # "Another song": for whoever pressed it
        reply = await context.service.more(_user(update))
        if isinstance(reply, Notice):  # e.g. a bystander with no selfie: only they see it
            text = reply.text
            if reply.asks_for_a_selfie and _in_group(update):  # or their selfie goes unseen
                hint = wording.TELEGRAM_GROUP_SELFIE_HINT.format(bot=context.bot.username)
                text = f"{text}\n{hint}"
            await _acknowledge(query, text, alert=True)
            return
        chat = update.effective_chat
        group = chat is not None and _in_group(update)
        if group and isinstance(reply, TrackCard) and not context.group_answers.allow(chat.id):
            # The group's minute filled up while the song was picked: it stays to be had.
            await context.service.undelivered(_user(update), reply)
            await _acknowledge(query, wording.GROUP_FULL, alert=True)
            return
        await _acknowledge(query)
        if isinstance(reply, TrackCard) and group:
            # It comes as a reply to someone's card: say whose song this one is.
            for_whom = wording.FOR_WHOM.format(name=query.from_user.first_name)
            reply = dataclasses.replace(reply, notes=(*reply.notes, for_whom))
        await _answer(update, context, reply)
    elif int(owner) != query.from_user.id:
        await _acknowledge(query, wording.FORGET_NOT_YOURS, alert=True)
    else:
        keep = context.match["answer"] == "no"
        reply = (
            await context.service.keep(_user(update))
            if keep
            else await context.service.forget(_user(update), confirmed=True)
        )
        if isinstance(reply, Notice) and reply.kind is NoticeKind.FORGOTTEN:
            cards = context.card_messages
            for message in [m for m, (owner, _) in cards.items() if owner == query.from_user.id]:
                del cards[message]
        await _acknowledge(query)
        await _replace_question(update, context, reply)


async def _acknowledge(query: CallbackQuery, text: str | None = None, alert: bool = False) -> None:
    """Stop the press's spinner (with a toast or an alert). A press answered late — /forget or
    /more waited for a selfie on its way, a backlog after a restart — is refused by Telegram
    ("query is too old"); what the press did still stands and its outcome still shows, so that
    refusal is no error to apologise for."""
    if text is not None and len(text) > ALERT_LIMIT:
        text = text[: ALERT_LIMIT - 1] + "…"  # Telegram refuses a longer one: nothing would show
    with contextlib.suppress(BadRequest):
        await query.answer(text, show_alert=alert)


async def stale_button(update: Update, context: MoodContext) -> None:
    """Callback data the bot never made (old versions, or forged): act on nothing."""
    query = update.callback_query
    assert query is not None
    log.info("ignored unknown callback data of %d bytes", len(query.data or ""))
    await _acknowledge(query, wording.BUTTON_EXPIRED, alert=True)


async def on_error(update: object, context: MoodContext) -> None:
    """Log what a handler let escape and apologise, except to a chat that refuses the bot
    (blocked, removed from the group, muted in it: logged at INFO, nothing sent). After a timeout the user
    hears that the chat service was slow, not that something broke: a send that timed out is
    not repeated, so its answer may have arrived after all.
    """
    update_id = update.update_id if isinstance(update, Update) else None
    if _refuses_the_bot(context.error):
        log.info("Telegram update %s: the chat refuses the bot (%s)", update_id, context.error)
        return  # an apology would be refused the same way
    log.error("Telegram update %s failed", update_id, exc_info=context.error)
    if not isinstance(update, Update):
        return
    with contextlib.suppress(TelegramError):
        if update.callback_query is not None:
            await update.callback_query.answer()
    slow = isinstance(context.error, TimedOut)
    with contextlib.suppress(TelegramError):
        if update.effective_chat is not None:
            await _answer(
                update, context, wording.PLATFORM_SLOW if slow else wording.SOMETHING_WENT_WRONG
            )


# --- helpers ---------------------------------------------------------------------------------


def _refuses_the_bot(error: object) -> bool:
    """Whether the chat will take nothing from the bot: blocked by the user, removed from the
    group (403), or a group where members may not post (Telegram says so with a 400)."""
    if isinstance(error, Forbidden):
        return True
    return isinstance(error, BadRequest) and "rights to send" in error.message


async def _replace_question(update: Update, context: MoodContext, reply: Reply | str) -> None:
    """Show the outcome of /forget in place of its question, or below it when the question
    can no longer be edited (deleted, or too old for Telegram to show the bot)."""
    query = update.callback_query
    assert query is not None
    if query.message is not None and query.message.is_accessible:
        if isinstance(reply, str):
            rendered = tr.plain(reply)
        else:
            (rendered,) = tr.render(reply, user_id=query.from_user.id)
        try:
            await query.edit_message_text(rendered.text, parse_mode=ParseMode.HTML)
            return
        except BadRequest as error:
            log.info("could not edit the /forget question (%s); answering below it", error)
    await _answer(update, context, reply)


def _message(update: Update) -> Message:
    message = update.effective_message
    assert message is not None  # guaranteed by the message filters
    return message


def _user(update: Update) -> UserRef:
    """The core's view of who acted (the button presser for callbacks)."""
    user = update.effective_user
    assert user is not None
    return UserRef(platform=PLATFORM, user_id=str(user.id), name=user.full_name)


def _pick_file(message: Message, limit: int) -> str | None:
    """The file to read: the largest photo size under ``limit``, or the image document."""
    if message.photo:
        fitting = [size for size in message.photo if _fits(size, limit)]
        if not fitting:
            return None
        return max(fitting, key=lambda size: size.width * size.height).file_id
    document = message.document
    assert document is not None  # PHOTO_INPUT let only photos and image documents through
    return document.file_id if document.file_size is None or document.file_size <= limit else None


def _fits(size: PhotoSize, limit: int) -> bool:
    return size.file_size is None or size.file_size <= limit


async def _download(context: MoodContext, file_id: str) -> bytes | None:
    """The file's bytes, in memory; None when it turns out too big."""
    try:
        telegram_file = await context.bot.get_file(file_id)
    except BadRequest as error:
        if "too big" in str(error).lower():
            return None
        raise
    if telegram_file.file_size is not None and telegram_file.file_size > context.max_image_bytes:
        return None
    try:
        data = await telegram_file.download_as_bytearray()
    except Forbidden as error:
        # The file server's 403 is no chat refusing the bot: the user hears the apology.
        raise TelegramError(f"photo download refused: {error.message}") from error
    if len(data) > context.max_image_bytes:
        return None
    return bytes(data)


@contextlib.asynccontextmanager
async def _showing(
    context: MoodContext, chat_id: int, action: str, topic: int | None = None
) -> AsyncIterator[None]:
    """Show ``action`` ("sending a photo…") in the chat from ``chat_action_after`` seconds into
    the block until it ends; a block that ends sooner shows nothing."""

    sending = stopped = False

    async def keep_showing() -> None:
        nonlocal sending
        await asyncio.sleep(context.chat_action_after)
        while True:
            sending = True
            await _chat_action(context, chat_id, action, topic)
            sending = False
            if stopped:
                return
            await asyncio.sleep(CHAT_ACTION_EVERY)

    task = asyncio.create_task(keep_showing())
    try:
        yield
    finally:
        stopped = True
        if not sending:  # a request in flight is let finish: cancelling it costs its connection
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _chat_action(
    context: MoodContext, chat_id: int, action: str, topic: int | None = None
) -> None:
    try:
        await context.bot.send_chat_action(chat_id, action, message_thread_id=topic)
    except TelegramError as error:  # cosmetic: never let it cost the user the answer
        log.debug("chat action failed: %s", error)


async def _answer(update: Update, context: MoodContext, reply: Reply | str) -> Message:
    """Send ``reply`` to the chat of ``update``, as a reply to its message (a long /history as
    several messages, in order); returns the last message sent."""
    user = update.effective_user
    user_id = user.id if user is not None else 0
    if isinstance(reply, str):
        messages = [tr.plain(reply)]
    else:
        if isinstance(reply, Notice) and reply.asks_for_a_selfie and _in_group(update):
            # In a group the bot sees only selfies addressed to it: say how, or the next plain
            # selfie there would go unanswered.
            how = _how_to_send(update, context)
            reply = dataclasses.replace(reply, text=f"{reply.text}\n{how}")
        art = await context.service.card_image(reply) if isinstance(reply, TrackCard) else None
        messages = tr.render(reply, user_id=user_id, art=art)
    chat = update.effective_chat
    assert chat is not None
    replied = update.callback_query.message if update.callback_query else update.effective_message
    try:
        for outgoing in messages:
            sent = await send(
                context.bot,
                chat.id,
                outgoing,
                reply_to=replied.message_id if replied else None,
                topic=_topic(replied),
                uploaded=context.uploaded,
                photoless=context.photoless_chats,
            )
    except TelegramError as refused:
        # A song Telegram refused (a timed-out send may have arrived) was never heard.
        if isinstance(reply, TrackCard) and user is not None and not isinstance(refused, TimedOut):
            await context.service.undelivered(_user(update), reply)
        raise
    if isinstance(reply, TrackCard) and user is not None:
        card = (chat.id, sent.message_id)
        _remember(context.card_messages, card, (user.id, reply.track_id), keep=CARDS_REMEMBERED)
    return sent


def _topic(message: object) -> int | None:
    """The forum topic a message is in, so answers (and "sending a photo…") go there too,
    also when the message they reply to has been deleted meanwhile."""
    if isinstance(message, Message) and message.is_topic_message:
        return message.message_thread_id
    return None


async def _answer_in_private(
    update: Update, context: MoodContext, reply: Reply, command: str
) -> None:
    """A personal answer (what the bot read on a face, the songs it sent with those readings):
    in a group it goes to the user's private chat with the bot, and the group only hears that
    it went there — or, when Telegram does not let the bot write first, a link that opens that
    chat and answers ``command`` there (``/start command``)."""
    user = update.effective_user
    if user is None or not _in_group(update) or isinstance(reply, Notice):
        await _answer(update, context, reply)  # a notice ("no reading yet") tells nothing
        return
    art = await context.service.card_image(reply) if isinstance(reply, TrackCard) else None
    try:
        for outgoing in tr.render(reply, user_id=user.id, art=art):
            await send(
                context.bot,
                user.id,
                outgoing,
                uploaded=context.uploaded,
                photoless=context.photoless_chats,
            )
    except (Forbidden, BadRequest) as refused:  # never started the bot, blocked it, ...
        log.info("could not answer in private: %s", refused.__class__.__name__)
        link = f"https://t.me/{context.bot.username}?start={command}"
        await _answer(update, context, wording.OPEN_PRIVATE_CHAT.format(link=link))
        return
    await _answer(update, context, wording.SENT_IN_PRIVATE)


async def send(
    bot: ExtBot[None],
    chat_id: int,
    outgoing: tr.Outgoing,
    *,
    reply_to: int | None = None,
    topic: int | None = None,
    uploaded: UploadedPhotos | None = None,
    photoless: PhotolessChats | None = None,
) -> Message:
    """Send one rendered message (into forum ``topic``, if any); a photo Telegram refuses falls
    back to the text alone (at once in a chat known to refuse photos: ``photoless``).

    A picture uploaded before goes by its ``file_id`` (see :class:`UploadedPhotos`); if
    Telegram no longer knows the id, the bytes are uploaded once more.
    """
    reply_parameters = (
        ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
        if reply_to is not None
        else None
    )
    where = {"chat_id": chat_id, "message_thread_id": topic, "reply_parameters": reply_parameters}
    if outgoing.photo is not None and not (photoless is not None and photoless.refuses(chat_id)):
        try:
            return await _send_photo(bot, where, outgoing, uploaded)
        except BadRequest as error:
            log.warning("Telegram refused the photo (%s); sending the text alone", error)
            if photoless is not None and _no_photo_rights(error):
                photoless.remember(chat_id)
    return await bot.send_message(
        text=outgoing.text,
        parse_mode=ParseMode.HTML,
        reply_markup=outgoing.keyboard,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
        **where,
    )


async def _send_photo(
    bot: ExtBot[None],
    where: dict[str, Any],
    outgoing: tr.Outgoing,
    uploaded: UploadedPhotos | None,
) -> Message:
    """The photo by its ``file_id`` when uploaded before, else (or when Telegram no longer
    knows that id) the bytes, whose new ``file_id`` is remembered. ``where``: the chat, topic
    and reply parameters of :func:`send`."""
    assert outgoing.photo is not None

    async def send_photo(photo: bytes | str) -> Message:
        return await bot.send_photo(
            photo=photo,
            caption=outgoing.text,
            parse_mode=ParseMode.HTML,
            reply_markup=outgoing.keyboard,
            **where,
        )

    data = outgoing.photo
    if uploaded is None or not isinstance(data, bytes):  # a URL: Telegram fetches it itself
        return await send_photo(data)
    known = uploaded.get(data)
    if known is not None:
        try:
            return await send_photo(known)
        except BadRequest as error:
            if _no_photo_rights(error):
                raise  # the id is fine; this chat takes no photos at all
            log.info("Telegram refused a file_id it gave us (%s); uploading again", error)
            uploaded.forget(data)
    sent = await send_photo(data)
    uploaded.remember(data, sent)
    return sent
