"""A local fake of the Telegram Bot API, good enough for python-telegram-bot to run against.

It is an ``aiohttp.web`` server on 127.0.0.1 (random port). Point the bot at it with
``base_url=fake.base_url`` and ``base_file_url=fake.base_file_url``. Tests act as Telegram users
(:meth:`FakeTelegramAPI.send_photo`, :meth:`~FakeTelegramAPI.send_command`,
:meth:`~FakeTelegramAPI.press_button`, …): each builds realistic update JSON and queues it for
``getUpdates``. Every call the bot makes is recorded as an :class:`ApiCall` with its decoded
parameters and uploaded files, so tests assert on what the user would see. Errors (429 with
``retry_after``, 5xx) can be injected per method with :meth:`FakeTelegramAPI.fail_next`, and slow
answers (for client timeouts) with :meth:`FakeTelegramAPI.stall_next`.

Webhooks work as on Telegram: once the bot calls ``setWebhook``, ``getUpdates`` answers 409 and
each queued update is POSTed to the registered URL with the secret token header instead; the
answers are recorded in :attr:`FakeTelegramAPI.webhook_deliveries`.

Requests arrive the way python-telegram-bot sends them: ``application/x-www-form-urlencoded``
with JSON-encoded values for objects, or ``multipart/form-data`` when a file is uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web
from PIL import Image

JSON = dict[str, Any]

# Telegram's photo size ladder: a compressed photo arrives as several JPEGs, smallest first.
PHOTO_SIDES = (90, 320, 800, 1280, 2560)
BOT_COMMAND_ENTITY = "bot_command"


@dataclass
class ApiCall:
    """One request the bot made: the method, its decoded parameters and any uploaded files."""

    method: str
    params: JSON
    files: dict[str, bytes] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    @property
    def chat_id(self) -> int | None:
        """The target chat as an int, when the method has one."""
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def reply_to(self) -> int | None:
        """The message this call replies to (``reply_parameters.message_id``), if any."""
        parameters = self.params.get("reply_parameters")
        if isinstance(parameters, dict):
            return parameters.get("message_id")
        return self.params.get("reply_to_message_id")

    @property
    def buttons(self) -> list[JSON]:
        """The inline keyboard's buttons, flattened row by row."""
        markup = self.params.get("reply_markup") or {}
        return [button for row in markup.get("inline_keyboard", []) for button in row]

    @property
    def text(self) -> str:
        """What the user reads: the message text or the photo caption."""
        return str(self.params.get("text") or self.params.get("caption") or "")


@dataclass(frozen=True)
class WebhookDelivery:
    """One update POSTed to the bot's webhook, and the HTTP status it answered (0: none)."""

    update_id: int
    status: int


@dataclass
class Failure:
    """An error to answer the next ``times`` calls of a method with."""

    status: int
    description: str
    retry_after: int | None = None
    times: int = 1


@dataclass(frozen=True)
class StoredFile:
    """Bytes the bot can fetch with getFile and the file URL."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    declared_size: int | None


def user(
    user_id: int,
    first_name: str = "Alice",
    *,
    username: str | None = None,
    last_name: str | None = None,
    language_code: str = "en",
) -> JSON:
    """A Telegram ``User`` object for a human."""
    result: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name:
        result["last_name"] = last_name
    if username:
        result["username"] = username
    result["language_code"] = language_code
    return result


def private_chat(of_user: JSON) -> JSON:
    """The private chat with ``of_user`` (its id equals the user id, as on Telegram)."""
    chat: JSON = {"id": of_user["id"], "type": "private", "first_name": of_user["first_name"]}
    if "username" in of_user:
        chat["username"] = of_user["username"]
    return chat


def group_chat(chat_id: int = -1001234567890, title: str = "Friends") -> JSON:
    """A supergroup chat (negative id, as on Telegram)."""
    return {"id": chat_id, "type": "supergroup", "title": title}


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _decode_value(value: str) -> Any:
    """Undo python-telegram-bot's encoding: objects and lists arrive as JSON strings."""
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class FakeTelegramAPI:
    """The fake Bot API server; use as ``async with FakeTelegramAPI() as fake``."""

    def __init__(
        self,
        token: str = "123456789:AAFakeTokenForTestsOnly-abcdefghijk",
        *,
        bot_id: int = 123456789,
        bot_username: str = "MoodLifterBot",
        bot_name: str = "Music Mood Lifter",
    ) -> None:
        self.token = token
        self.bot_user: JSON = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[int, int], JSON] = {}
        self.commands: list[JSON] = []
        self.answered_callbacks: dict[str, JSON] = {}
        # Telegram refuses to answer a button press after some seconds ("query is too old");
        # None: never (set it to test a slow answer).
        self.callback_answer_window: float | None = None
        self._pressed_at: dict[str, float] = {}
        self._updates: list[JSON] = []
        self._update_ids = itertools.count(10_000)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._callback_ids = itertools.count(900_000)
        self._file_ids = itertools.count(1)
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._failures: dict[str, list[Failure]] = {}
        self._stalls: dict[str, list[list[float]]] = {}  # method -> [[seconds, times left]]
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.delivered_update_ids: set[int] = set()
        self.webhook: JSON | None = None  # the setWebhook parameters while one is set
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_client: ClientSession | None = None
        self._webhook_inflight = 0
        self.delivered_updates: list[JSON] = []  # every update getUpdates handed out, in order

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening; pending long polls end."""
        if self._webhook_client is not None:
            await self._webhook_client.close()
            self._webhook_client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegramAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """What python-telegram-bot's ``base_url`` should be (the token is appended)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """What python-telegram-bot's ``base_file_url`` should be."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def bot_username(self) -> str:
        return str(self.bot_user["username"])

    # --- what the tests inspect ----------------------------------------------------------------

    def calls_to(self, *methods: str, chat_id: int | None = None) -> list[ApiCall]:
        """Recorded calls of the given methods (all when none given), optionally to one chat."""
        return [
            call
            for call in self.calls
            if (not methods or call.method in methods)
            and (chat_id is None or call.chat_id == chat_id)
        ]

    def replies(self, chat_id: int | None = None) -> list[ApiCall]:
        """Messages the bot sent (text, photo, document), in order."""
        return self.calls_to("sendMessage", "sendPhoto", "sendDocument", chat_id=chat_id)

    async def wait_for(
        self,
        predicate: Callable[[ApiCall], bool] | str,
        *,
        count: int = 1,
        within: float = 30.0,
    ) -> list[ApiCall]:
        """Wait until ``count`` recorded calls match; a string matches the method name."""
        if isinstance(predicate, str):
            method = predicate

            def predicate(call: ApiCall) -> bool:
                return call.method == method

        async def matched() -> list[ApiCall]:
            async with self._changed:
                while True:
                    found = [call for call in self.calls if predicate(call)]
                    if len(found) >= count:
                        return found
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(matched(), within)
        except TimeoutError:
            seen = [(call.method, call.text[:60]) for call in self.calls]
            raise AssertionError(
                f"timed out waiting for {count} matching call(s); saw {seen}"
            ) from None

    async def wait_for_replies(
        self, chat_id: int, count: int, *, within: float = 30.0
    ) -> list[ApiCall]:
        """Wait until the bot has sent ``count`` messages to ``chat_id``."""
        sends = ("sendMessage", "sendPhoto", "sendDocument")
        return await self.wait_for(
            lambda call: call.method in sends and call.chat_id == chat_id,
            count=count,
            within=within,
        )

    async def wait_until_delivered(self, within: float = 30.0) -> None:
        """Wait until the bot has confirmed (by offset) every queued update."""

        async def drained() -> None:
            async with self._changed:
                while self._updates or self._webhook_inflight:
                    await self._changed.wait()

        await asyncio.wait_for(drained(), within)

    # --- fault injection -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (429 takes retry_after)."""
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else "Internal Server Error"
            )
        if status == 429 and retry_after is None:
            retry_after = 1
        self._failures.setdefault(method, []).append(
            Failure(status, description, retry_after, times)
        )

    def stall_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` answers to ``method`` (or ``"GET file"``) for ``seconds``.

        Longer than the client's read timeout, this is a timeout. The call still takes effect
        when the wait is over, as on Telegram, where a send that timed out may have reached
        the user all the same.
        """
        self._stalls.setdefault(method, []).append([seconds, times])

    async def _stall(self, method: str) -> None:
        queue = self._stalls.get(method)
        if not queue:
            return
        seconds = queue[0][0]
        queue[0][1] -= 1
        if queue[0][1] <= 0:
            queue.pop(0)
        await asyncio.sleep(seconds)

    # --- files ---------------------------------------------------------------------------------

    def register_file(
        self, data: bytes, *, folder: str = "photos", suffix: str = "jpg", declared_size: int | None
    ) -> StoredFile:
        """Store bytes under a new file id; ``declared_size`` is what Telegram would report."""
        number = next(self._file_ids)
        stored = StoredFile(
            file_id=f"AgACAgIAAxkBAAI{number:06d}fake",
            file_unique_id=f"AQAD{number:06d}",
            file_path=f"{folder}/file_{number}.{suffix}",
            data=data,
            declared_size=declared_size,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    def photo_sizes(self, image: bytes, *, sizes: tuple[int, ...] = PHOTO_SIDES) -> list[JSON]:
        """Turn one image into Telegram's ``PhotoSize`` list, smallest first, as Telegram does."""
        with Image.open(io.BytesIO(image)) as original:
            original.load()
            width, height = original.size
            result: list[JSON] = []
            for side in sizes:
                scale = min(1.0, side / max(width, height))
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                if result and (result[-1]["width"], result[-1]["height"]) == size:
                    break
                data = image if scale == 1.0 else _jpeg(original.resize(size))
                stored = self.register_file(data, declared_size=len(data))
                result.append(self._photo_size(stored, *size))
        return result

    def _photo_size(self, stored: StoredFile, width: int, height: int) -> JSON:
        result: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
        }
        if stored.declared_size is not None:
            result["file_size"] = stored.declared_size
        return result

    # --- acting as users -----------------------------------------------------------------------

    def push_update(self, update: JSON) -> JSON:
        """Queue a raw update (an ``update_id`` is assigned) for the next getUpdates."""
        update = {"update_id": next(self._update_ids), **update}
        if self.webhook is not None:
            self._post_to_webhook(update)
            return update
        self._updates.append(update)
        self._notify_soon()
        return update

    def add_bot_to(
        self, chat: JSON, by_user: JSON, *, status: str = "member", was: str = "left"
    ) -> JSON:
        """``by_user`` adds the bot to ``chat`` (a ``my_chat_member`` update); ``status``
        "administrator" when added as an admin, ``was`` "member" for a promotion."""
        member = {"user": self.bot_user, "status": status}
        if status == "administrator":
            member |= {"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                       "can_delete_messages": False, "can_manage_video_chats": False,
                       "can_restrict_members": False, "can_promote_members": False,
                       "can_change_info": False, "can_invite_users": True,
                       "can_post_stories": False, "can_edit_stories": False,
                       "can_delete_stories": False}  # fmt: skip
        change = {
            "chat": chat,
            "from": by_user,
            "date": int(time.time()),
            "old_chat_member": {"user": self.bot_user, "status": was},
            "new_chat_member": member,
        }
        return self.push_update({"my_chat_member": change})

    def react(self, by_user: JSON, message: JSON, emoji: str, *, was: str | None = None) -> JSON:
        """``by_user`` sets the reaction ``emoji`` on ``message`` (one the bot sent: see
        :meth:`sent_message`), replacing ``was`` (a ``message_reaction`` update)."""
        change = {
            "chat": message["chat"],
            "message_id": message["message_id"],
            "user": by_user,
            "date": int(time.time()),
            "old_reaction": [{"type": "emoji", "emoji": was}] if was else [],
            "new_reaction": [{"type": "emoji", "emoji": emoji}],
        }
        return self.push_update({"message_reaction": change})

    def new_message(
        self,
        from_user: JSON,
        chat: JSON | None = None,
        *,
        reply_to: JSON | None = None,
        **content: Any,
    ) -> JSON:
        """A ``Message`` from a user, stored so it can be replied to; not yet queued."""
        chat = chat or private_chat(from_user)
        message: JSON = {
            "message_id": self._next_message_id(chat["id"]),
            "from": from_user,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        if reply_to is not None:
            replied = dict(reply_to)
            replied.pop("reply_to_message", None)  # Telegram nests one level only
            message["reply_to_message"] = replied
        self.messages[(chat["id"], message["message_id"])] = message
        return message

    def send_message(self, message: JSON) -> JSON:
        """Queue a ``message`` update for the given message; returns the message."""
        self.push_update({"message": message})
        return message

    def send_text(self, from_user: JSON, text: str, chat: JSON | None = None, **extra: Any) -> JSON:
        """A user sends text; a leading ``/word`` (optionally ``@bot``) becomes a command entity."""
        content: JSON = {"text": text}
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            content["entities"] = [
                {"type": BOT_COMMAND_ENTITY, "offset": 0, "length": len(command)}
            ]
        elif mentions := self._mention_entities(text):
            content["entities"] = mentions
        return self.send_message(self.new_message(from_user, chat, **content, **extra))

    def send_command(
        self, from_user: JSON, command: str, chat: JSON | None = None, **extra: Any
    ) -> JSON:
        """A user sends ``/command args``; same as :meth:`send_text` but insists on the slash."""
        if not command.startswith("/"):
            raise ValueError("a command starts with '/'")
        return self.send_text(from_user, command, chat, **extra)

    def send_photo(
        self,
        from_user: JSON,
        image: bytes,
        chat: JSON | None = None,
        *,
        caption: str | None = None,
        reply_to: JSON | None = None,
        sizes: list[JSON] | None = None,
        **extra: Any,
    ) -> JSON:
        """A user sends a compressed photo (several sizes); a caption may mention the bot;
        ``extra`` fields go into the message (e.g. a forum topic's ``message_thread_id``)."""
        content: JSON = {"photo": sizes if sizes is not None else self.photo_sizes(image)}
        if caption:
            content["caption"] = caption
            entities = self._mention_entities(caption)
            if entities:
                content["caption_entities"] = entities
        message = self.new_message(from_user, chat, reply_to=reply_to, **content, **extra)
        return self.send_message(message)

    def send_document(
        self,
        from_user: JSON,
        data: bytes,
        chat: JSON | None = None,
        *,
        mime_type: str | None = "image/jpeg",
        file_name: str = "selfie.jpg",
        declared_size: int | None = -1,
        caption: str | None = None,
        reply_to: JSON | None = None,
        media_group_id: str | None = None,
    ) -> JSON:
        """A user sends a file (as part of album ``media_group_id``, if given); ``declared_size``
        -1 means the real size, None leaves it out, as ``mime_type`` None leaves out the type."""
        size = len(data) if declared_size == -1 else declared_size
        suffix = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.register_file(data, folder="documents", suffix=suffix, declared_size=size)
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
        }
        if mime_type is not None:
            document["mime_type"] = mime_type
        if size is not None:
            document["file_size"] = size
        content: JSON = {"document": document}
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        if caption:
            content["caption"] = caption
            entities = self._mention_entities(caption)
            if entities:
                content["caption_entities"] = entities
        return self.send_message(self.new_message(from_user, chat, reply_to=reply_to, **content))

    def send_sticker(
        self, from_user: JSON, chat: JSON | None = None, *, reply_to: JSON | None = None
    ) -> JSON:
        """A user sends a static WebP sticker (perhaps replying to ``reply_to``)."""
        stored = self.register_file(
            b"RIFF\x00\x00\x00\x00WEBP", folder="stickers", suffix="webp", declared_size=12
        )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "😀",
            "set_name": "FakeStickers",
            "file_size": 12,
        }
        return self.send_message(
            self.new_message(from_user, chat, sticker=sticker, reply_to=reply_to)
        )

    def send_voice(self, from_user: JSON, chat: JSON | None = None) -> JSON:
        """A user sends a voice note."""
        stored = self.register_file(b"OggS\x00fake", folder="voice", suffix="oga", declared_size=9)
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": 3,
            "mime_type": "audio/ogg",
            "file_size": 9,
        }
        return self.send_message(self.new_message(from_user, chat, voice=voice))

    def send_video(
        self, from_user: JSON, chat: JSON | None = None, *, caption: str | None = None, **extra: Any
    ) -> JSON:
        """A user sends a video (``extra``: e.g. the ``media_group_id`` of an album)."""
        stored = self.register_file(
            b"\x00\x00\x00\x18ftypmp42", folder="videos", suffix="mp4", declared_size=12
        )
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 640,
            "height": 480,
            "duration": 2,
            "mime_type": "video/mp4",
            "file_size": 12,
        }
        content: JSON = {"video": video}
        if caption:
            content["caption"] = caption
            entities = self._mention_entities(caption)
            if entities:
                content["caption_entities"] = entities
        return self.send_message(self.new_message(from_user, chat, **content, **extra))

    def send_animation(self, from_user: JSON, chat: JSON | None = None) -> JSON:
        """A user sends a GIF; Telegram delivers it as both ``animation`` and ``document``."""
        stored = self.register_file(
            b"\x00\x00\x00\x18ftypmp42", folder="animations", suffix="mp4", declared_size=12
        )
        animation = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 320,
            "height": 240,
            "duration": 1,
            "file_name": "funny.gif.mp4",
            "mime_type": "video/mp4",
            "file_size": 12,
        }
        document = {
            k: animation[k]
            for k in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
        }
        message = self.new_message(from_user, chat, animation=animation, document=document)
        return self.send_message(message)

    def press_button(self, from_user: JSON, message: JSON | ApiCall, data: str) -> str:
        """A user taps an inline button carrying ``data`` under a bot message; returns query id."""
        if isinstance(message, ApiCall):
            message = self.sent_message(message)
        query_id = str(next(self._callback_ids))
        self._pressed_at[query_id] = time.monotonic()
        self.push_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": from_user,
                    "message": message,
                    "chat_instance": f"-{abs(message['chat']['id'])}42",
                    "data": data,
                }
            }
        )
        return query_id

    def sent_message(self, call: ApiCall) -> JSON:
        """The ``Message`` the fake returned for a send call (as stored, with later edits)."""
        message_id = call.params.get("_message_id")
        if message_id is None:
            raise ValueError(f"{call.method} did not create a message")
        return self.messages[(int(call.params["chat_id"]), int(message_id))]

    def _mention_entities(self, text: str) -> list[JSON]:
        """Telegram marks every ``@username`` (any letter case) as a ``mention`` entity."""
        entities = []
        for match in re.finditer(r"(?<!\w)@[A-Za-z][A-Za-z0-9_]{4,31}", text):
            # Offsets and lengths count UTF-16 code units, as on Telegram.
            offset = len(text[: match.start()].encode("utf-16-le")) // 2
            length = len(match.group().encode("utf-16-le")) // 2
            entities.append({"type": "mention", "offset": offset, "length": length})
        return entities

    # --- webhook delivery ------------------------------------------------------------------

    def _post_to_webhook(self, update: JSON) -> None:
        """POST the update to the webhook URL, as Telegram does (once; the answer is kept)."""
        assert self.webhook is not None
        webhook = self.webhook
        self._webhook_inflight += 1

        async def deliver() -> None:
            status = 0  # no HTTP answer at all
            try:
                if self._webhook_client is None:
                    self._webhook_client = ClientSession()
                headers = {}
                if webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = str(webhook["secret_token"])
                async with self._webhook_client.post(
                    str(webhook["url"]), json=update, headers=headers
                ) as response:
                    status = response.status
            except OSError:
                pass
            finally:
                self.webhook_deliveries.append(WebhookDelivery(update["update_id"], status))
                self._webhook_inflight -= 1
                async with self._changed:
                    self._changed.notify_all()

        task = asyncio.get_running_loop().create_task(deliver())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _notify_soon(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        with contextlib.suppress(RuntimeError):  # no loop yet: nobody is waiting either
            task = asyncio.get_running_loop().create_task(notify())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _read_params(self, request: web.Request) -> tuple[JSON, dict[str, bytes]]:
        params: JSON = dict(request.query)
        files: dict[str, bytes] = {}
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                form = await request.post()
                for name, value in form.items():
                    if isinstance(value, web.FileField):
                        files[name] = value.file.read()
                    else:
                        params[name] = _decode_value(str(value))
        # A file sent with "attach://name" is the same as the field itself.
        for name, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                attached = value.removeprefix("attach://")
                if attached in files:
                    files[name] = files[attached]
        return params, files

    async def _handle_method(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params, files = await self._read_params(request)
        await self._stall(method)
        call = ApiCall(method, params, files)
        failure = self._take_failure(method)
        if failure is None:
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                response = _error(404, "Not Found: method not found")
            else:
                try:
                    result = await handler(call)
                except _ApiError as error:
                    response = _error(error.status, error.description)
                else:
                    response = web.json_response({"ok": True, "result": result})
        else:
            response = _error(failure.status, failure.description, failure.retry_after)
            call.params["_failed_with"] = failure.status
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return response

    def _take_failure(self, method: str) -> Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        path = request.match_info["path"]
        await self._stall("GET file")
        self.calls.append(ApiCall("GET file", {"file_path": path}))
        async with self._changed:  # wake wait_for("GET file")
            self._changed.notify_all()
        failure = self._take_failure("GET file")
        if failure is not None:
            return web.Response(status=failure.status, text=failure.description)
        stored = self._files_by_path.get(path)
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # --- Bot API methods -----------------------------------------------------------------------

    async def _api_getMe(self, call: ApiCall) -> JSON:
        return self.bot_user

    async def _api_setWebhook(self, call: ApiCall) -> bool:
        url = str(call.params.get("url") or "")
        if not url:
            return await self._api_deleteWebhook(call)
        if not url.startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: invalid webhook URL specified")
        self.webhook = dict(call.params)
        pending, self._updates = self._updates, []
        for update in pending:  # what getUpdates had not handed out goes to the webhook now
            self._post_to_webhook(update)
        return True

    async def _api_deleteWebhook(self, call: ApiCall) -> bool:
        self.webhook = None
        if str(call.params.get("drop_pending_updates", "")).lower() == "true":
            self._updates.clear()
        return True

    async def _api_getWebhookInfo(self, call: ApiCall) -> JSON:
        return {
            "url": (self.webhook or {}).get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates) + self._webhook_inflight,
        }

    async def _api_setMyCommands(self, call: ApiCall) -> bool:
        self.commands = list(call.params.get("commands") or [])
        return True

    async def _api_getMyCommands(self, call: ApiCall) -> list[JSON]:
        return self.commands

    async def _api_getUpdates(self, call: ApiCall) -> list[JSON]:
        if self.webhook is not None:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = int(call.params.get("offset") or 0)
        timeout = float(call.params.get("timeout") or 0)
        limit = int(call.params.get("limit") or 100)
        if offset:
            # Telegram forgets updates once a later offset confirms them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            async with self._changed:
                self._changed.notify_all()
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not self._updates:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return []
        batch = self._updates[:limit]
        allowed = call.params.get("allowed_updates")
        if allowed:  # Telegram leaves out (and drops) the kinds of update a bot did not ask for
            batch = [u for u in batch if set(u) - {"update_id"} <= set(allowed)]
        self.delivered_update_ids.update(u["update_id"] for u in batch)
        self.delivered_updates.extend(batch)
        return batch

    async def _api_getFile(self, call: ApiCall) -> JSON:
        stored = self._files.get(str(call.params.get("file_id")))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        result: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_path": stored.file_path,
        }
        if stored.declared_size is not None:
            result["file_size"] = stored.declared_size
        return result

    async def _api_sendChatAction(self, call: ApiCall) -> bool:
        self._require_chat(call)
        return True

    async def _api_answerCallbackQuery(self, call: ApiCall) -> bool:
        query_id = str(call.params.get("callback_query_id"))
        if query_id in self.answered_callbacks:
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired")
        window = self.callback_answer_window
        pressed = self._pressed_at.get(query_id)
        if window is not None and pressed is not None and time.monotonic() - pressed > window:
            raise _ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        self.answered_callbacks[query_id] = call.params
        return True

    async def _api_sendMessage(self, call: ApiCall) -> JSON:
        text = call.params.get("text")
        if not text:
            raise _ApiError(400, "Bad Request: message text is empty")
        if _visible_length(call, str(text)) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        return self._store_sent(call, text=text, **self._entities_of(call))

    async def _api_sendPhoto(self, call: ApiCall) -> JSON:
        photo = call.files.get("photo") or call.params.get("photo")
        if not photo:
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        # A URL is accepted as the real Bot API would (it fetches it; this fake cannot). Tests
        # make a URL fail with fail_next("sendPhoto", status=400, description=...).
        is_url = isinstance(photo, str) and photo.startswith(("http://", "https://"))
        if isinstance(photo, str) and not is_url and photo not in self._files:
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        caption = call.params.get("caption")
        if caption is not None and _visible_length(call, str(caption)) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        data = photo if isinstance(photo, bytes) else b""
        stored = self.register_file(data, declared_size=len(data))
        sizes = [self._photo_size(stored, 512, 512)]
        extra: JSON = {"photo": sizes}
        if caption:
            extra["caption"] = caption
        return self._store_sent(call, **extra)

    async def _api_editMessageText(self, call: ApiCall) -> JSON:
        message = self._edited(call)
        message["text"] = call.params.get("text")
        message.pop("reply_markup", None)
        if call.params.get("reply_markup"):
            message["reply_markup"] = call.params["reply_markup"]
        return message

    async def _api_editMessageReplyMarkup(self, call: ApiCall) -> JSON:
        message = self._edited(call)
        message.pop("reply_markup", None)
        if call.params.get("reply_markup"):
            message["reply_markup"] = call.params["reply_markup"]
        return message

    async def _api_editMessageCaption(self, call: ApiCall) -> JSON:
        message = self._edited(call)
        message["caption"] = call.params.get("caption")
        return message

    async def _api_deleteMessage(self, call: ApiCall) -> bool:
        key = (self._require_chat(call), int(call.params.get("message_id", 0)))
        if self.messages.pop(key, None) is None:
            raise _ApiError(400, "Bad Request: message to delete not found")
        return True

    def _edited(self, call: ApiCall) -> JSON:
        key = (self._require_chat(call), int(call.params.get("message_id", 0)))
        message = self.messages.get(key)
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        message["edit_date"] = int(time.time())
        return message

    def _require_chat(self, call: ApiCall) -> int:
        if call.params.get("chat_id") in (None, ""):
            raise _ApiError(400, "Bad Request: chat_id is empty")
        try:
            return int(call.params["chat_id"])
        except ValueError:
            raise _ApiError(400, "Bad Request: chat not found") from None

    def _entities_of(self, call: ApiCall) -> JSON:
        entities = call.params.get("entities")
        return {"entities": entities} if entities else {}

    def _chat_for(self, chat_id: int) -> JSON:
        for (known_chat, _), message in self.messages.items():
            if known_chat == chat_id:
                return dict(message["chat"])
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "User"}
        return group_chat(chat_id)

    def _store_sent(self, call: ApiCall, **content: Any) -> JSON:
        chat_id = self._require_chat(call)
        reply_to = call.reply_to
        if reply_to is not None and (chat_id, int(reply_to)) not in self.messages:
            parameters = call.params.get("reply_parameters") or {}
            if not parameters.get("allow_sending_without_reply"):
                raise _ApiError(400, "Bad Request: message to be replied not found")
            reply_to = None
        message: JSON = {
            "message_id": self._next_message_id(chat_id),
            "from": self.bot_user,
            "chat": self._chat_for(chat_id),
            "date": int(time.time()),
            **content,
        }
        if reply_to is not None:
            replied = dict(self.messages[(chat_id, int(reply_to))])
            replied.pop("reply_to_message", None)  # Telegram nests one level only
            message["reply_to_message"] = replied
        if call.params.get("reply_markup"):
            message["reply_markup"] = call.params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        call.params["_message_id"] = message["message_id"]
        return message


def visible_text(markup: str) -> str:
    """What a Telegram client shows for HTML text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def shown(call: ApiCall) -> str:
    """The text a Telegram client shows for a call's HTML message or caption."""
    return visible_text(call.text)


def _visible_length(call: ApiCall, text: str) -> int:
    """Telegram's limits count the text after entity parsing, in UTF-16 code units."""
    if str(call.params.get("parse_mode", "")).upper() == "HTML":
        text = visible_text(text)
    return len(text.encode("utf-16-le")) // 2


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: JSON = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
