"""The fake Bot API answers python-telegram-bot's own ``Bot`` the way Telegram would."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter

from tests.fakes.telegram_api import FakeTelegramAPI, group_chat, private_chat, user


def _jpeg(width: int = 640, height: int = 480) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 80)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
async def bot(fake: FakeTelegramAPI) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


async def test_get_me_and_wrong_token(fake: FakeTelegramAPI, bot: Bot) -> None:
    assert bot.username == fake.bot_username
    stranger = Bot("42:wrong", base_url=fake.base_url, base_file_url=fake.base_file_url)
    with pytest.raises(InvalidToken):
        await stranger.initialize()


async def test_photo_update_has_a_size_ladder_and_files_download(
    fake: FakeTelegramAPI, bot: Bot
) -> None:
    alice = user(1001, "Alice")
    fake.send_photo(alice, _jpeg(1600, 1200), caption="hi")
    updates = await bot.get_updates(timeout=1)
    assert len(updates) == 1
    sizes = updates[0].message.photo
    assert [s.width for s in sizes] == [90, 320, 800, 1280, 1600]
    assert all(s.file_size for s in sizes)
    biggest = await (await bot.get_file(sizes[-1].file_id)).download_as_bytearray()
    assert bytes(biggest) == fake.file_bytes(sizes[-1].file_id)
    with Image.open(io.BytesIO(bytes(biggest))) as image:
        assert image.size == (1600, 1200)
    # A later offset confirms the update: Telegram forgets it.
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()


async def test_long_poll_wakes_up_when_an_update_arrives(fake: FakeTelegramAPI, bot: Bot) -> None:
    import asyncio

    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    fake.send_command(user(7, "Bo"), "/more@MoodLifterBot", group_chat())
    updates = await asyncio.wait_for(poll, 5)
    message = updates[0].message
    assert message.text == "/more@MoodLifterBot"
    assert message.entities[0].type == "bot_command"
    assert message.chat.type == "supergroup"


async def test_sends_are_recorded_with_their_parameters(fake: FakeTelegramAPI, bot: Bot) -> None:
    alice = user(1001, "Alice")
    incoming = fake.send_text(alice, "hello")
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Open", url="https://open.spotify.com/track/x"),
                InlineKeyboardButton("Again", callback_data="more"),
            ]
        ]
    )
    sent = await bot.send_photo(
        alice["id"],
        photo=b"\x89PNG fake bytes",
        caption="<b>Song</b>",
        parse_mode="HTML",
        reply_markup=keyboard,
        reply_parameters=ReplyParameters(incoming["message_id"]),
    )
    call = fake.calls_to("sendPhoto")[0]
    assert call.files["photo"] == b"\x89PNG fake bytes"
    assert call.text == "<b>Song</b>"
    assert call.reply_to == incoming["message_id"]
    assert [b.get("callback_data") for b in call.buttons] == [None, "more"]
    assert sent.reply_to_message.message_id == incoming["message_id"]

    fake.press_button(alice, call, "more")
    update = (await bot.get_updates(timeout=1))[-1]
    assert update.callback_query.data == "more"
    assert update.callback_query.message.message_id == sent.message_id
    assert await update.callback_query.answer("ok")
    assert fake.answered_callbacks[update.callback_query.id]["text"] == "ok"
    edited = await bot.edit_message_caption(alice["id"], sent.message_id, caption="changed")
    assert edited.caption == "changed"


async def test_documents_stickers_voice_video(fake: FakeTelegramAPI, bot: Bot) -> None:
    alice = user(1001, "Alice")
    chat = private_chat(alice)
    fake.send_document(alice, b"%PDF-1.4", chat, mime_type="application/pdf", file_name="a.pdf")
    fake.send_sticker(alice)
    fake.send_voice(alice)
    fake.send_video(alice)
    fake.send_animation(alice)
    messages = [u.message for u in await bot.get_updates(timeout=1)]
    assert messages[0].document.mime_type == "application/pdf"
    assert messages[1].sticker is not None
    assert messages[2].voice is not None
    assert messages[3].video is not None
    assert messages[4].animation is not None and messages[4].document is not None


async def test_injected_errors(fake: FakeTelegramAPI, bot: Bot) -> None:
    fake.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.send_message(1, "x")
    fake.fail_next("sendMessage", status=500, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_message(1, "x")
    assert (await bot.send_message(1, "x")).text == "x"
    with pytest.raises(BadRequest, match="text is empty"):
        await bot.send_message(1, "")


async def test_webhook_replaces_get_updates_until_deleted(fake: FakeTelegramAPI, bot: Bot) -> None:
    """As on Telegram: with a webhook set, updates are POSTed to it with the secret token and
    getUpdates is a conflict; deleteWebhook brings polling back."""
    from aiohttp import web
    from telegram.error import Conflict

    received: list[tuple[dict[str, object], str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        alice = user(1001, "Alice")
        fake.send_text(alice, "before")  # queued for getUpdates, then handed to the webhook
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s-1")
        fake.send_text(alice, "after")
        await fake.wait_until_delivered()
        assert sorted((u["message"]["text"], secret) for u, secret in received) == [
            ("after", "s-1"),
            ("before", "s-1"),
        ]
        assert [d.status for d in fake.webhook_deliveries] == [200, 200]
        assert (await bot.get_webhook_info()).url.endswith("/hook")
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)
        assert await bot.delete_webhook()
        fake.send_text(alice, "polled")
        (update,) = await bot.get_updates(timeout=1)
        assert update.message.text == "polled"
    finally:
        await runner.cleanup()
