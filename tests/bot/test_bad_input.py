"""Everything a stranger can send the Telegram bot, each answered kindly, none of it fatal.

One parametrized test walks a table of bad, odd and hostile inputs through the real
Application polling the fake Bot API (real core, real models, a SQLite file). For each case it
checks the exact words the user gets (or that a song card comes, when the odd input is still a
usable photo), that no handler failed, and that the same user's next selfie still gets a card.
The bot, the core and the fake server are shared by the module (starting them per case would
cost more than the cases), and every case acts as its own user. The images are made here, in
memory, from scikit-image's sample photos and PIL drawings.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw
from skimage import data as skdata

from bot import telegram as telegram_adapter
from bot import wording
from bot.telegram import MoodApplication, build_application, polling
from core import images, service
from core.catalog import ensure_catalog
from core.config import LimitsSettings, Secret, TelegramSettings
from core.moods import Mode
from core.service import MoodLifter
from tests.bot.conftest import service_settings
from tests.fakes.telegram_api import ApiCall, FakeTelegramAPI, private_chat, shown, user

pytestmark = pytest.mark.asyncio(loop_scope="module")

JSON = dict[str, Any]
MAX_IMAGE_BYTES = 2_000_000
WAIT = 120.0  # seconds; the CPU is shared with a training run
SENDS = ("sendMessage", "sendPhoto", "sendDocument")
TELEGRAM_HELP = f"{service.HELP_SEND}\n\n{telegram_adapter.SYNTAX.help_body(Mode.LIFT)}"
CARD = "a song card"  # the expected answer when the odd input is still a usable selfie
PLEASE_JPEG_OR_PNG = "JPEG or PNG"


# --- the images ----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def astronaut() -> Image.Image:
    """One clear face (Eileen Collins, from scikit-image)."""
    return Image.fromarray(skdata.astronaut())


@functools.cache
def selfie() -> bytes:
    return encode(astronaut(), quality=90)


def png_chunks(*chunks: tuple[bytes, bytes]) -> bytes:
    """A PNG made of raw chunks, each with its correct CRC."""
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
    return out


def decompression_bomb() -> bytes:
    """A few hundred bytes whose header claims 100,000 x 100,000 RGB pixels (30 GB)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return png_chunks((b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\0" * 10_000, 9)), (b"IEND", b""))


def bad_crc_png() -> bytes:
    payload = bytearray(encode(astronaut(), "PNG"))
    payload[payload.index(b"IDAT") + 50] ^= 0xFF  # the stored CRC no longer matches
    return bytes(payload)


def heic() -> bytes:
    """An iPhone's kind of photo (HEIC), as it arrives when sent as a file."""
    return encode(astronaut(), "HEIF", quality=80)


def broken_heic() -> bytes:
    """The start of an iPhone photo: an ISO-BMFF ``ftyp`` box of brand ``heic``, then a ``meta``
    box header, and nothing a decoder can use."""
    ftyp = struct.pack(">I", 24) + b"ftyp" + b"heic" + b"\0\0\0\0" + b"mif1heic"
    meta = struct.pack(">I", 40) + b"meta" + b"\0" * 32
    return ftyp + meta + b"\0" * 200


def cmyk_jpeg() -> bytes:
    return encode(astronaut().convert("CMYK"), quality=90)


def png_16_bit() -> bytes:
    gray = np.asarray(astronaut().convert("L")).astype(np.uint16) * 257
    return encode(Image.fromarray(gray), "PNG")  # mode I;16


def transparent_face_png() -> bytes:
    """RGBA where the face (and the helmet around it) is fully transparent."""
    rgba = np.dstack([skdata.astronaut(), np.full((512, 512), 255, np.uint8)])
    rgba[20:230, 140:320, 3] = 0
    return encode(Image.fromarray(rgba), "PNG")


# Stored pixels for each EXIF orientation: what a camera writes so that applying the
# orientation shows the upright photo again.
_STORED_FOR = {
    1: (),
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_90,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_270,),
}


def exif_oriented(orientation: int) -> bytes:
    """The selfie stored turned or mirrored, with the EXIF tag that turns it upright again."""
    stored = astronaut()
    for step in _STORED_FOR[orientation]:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, quality=90, exif=exif.tobytes())


def absurd_exif() -> bytes:
    """Orientation 65535, a negative-looking resolution and a date from the year 9999."""
    exif = Image.Exif()
    exif[0x0112] = 65535
    exif[0x011A] = 0  # XResolution 0
    exif[0x0132] = "9999:99:99 99:99:99"
    exif[0x010F] = "\u202e" + "x" * 5000  # a right-to-left override and a long maker name
    return encode(astronaut(), quality=90, exif=exif.tobytes())


def plain(color: str, size: tuple[int, int] = (640, 480)) -> bytes:
    return encode(Image.new("RGB", size, color))


def noise() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


def cartoon() -> bytes:
    """A drawn smiley-like face: skin-coloured oval, eyes, nose, smile."""
    drawing = Image.new("RGB", (512, 512), "white")
    pen = ImageDraw.Draw(drawing)
    pen.ellipse((106, 76, 406, 436), fill=(255, 220, 180), outline="black", width=6)
    pen.ellipse((180, 180, 220, 230), fill="black")
    pen.ellipse((290, 180, 330, 230), fill="black")
    pen.line((256, 220, 240, 290, 265, 290), fill="black", width=5)
    pen.arc((180, 260, 330, 360), 20, 160, fill="black", width=8)
    return encode(drawing)


def tiny_face() -> bytes:
    """The face shrunk to 14 x 17 px in the middle of a 1280 px photo."""
    head = astronaut().crop((160, 30, 300, 200)).resize((14, 17))
    canvas = Image.new("RGB", (1280, 1280), (120, 120, 120))
    canvas.paste(head, (600, 600))
    return encode(canvas)


def twelve_faces() -> bytes:
    """A 4 x 3 grid of the face, every other one mirrored (a class photo)."""
    tile = astronaut().crop((110, 0, 360, 300))
    grid = Image.new("RGB", (1000, 900), (200, 200, 200))
    for i in range(12):
        face = tile if i % 2 == 0 else tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        grid.paste(face, ((i % 4) * 250, (i // 4) * 300))
    return encode(grid, quality=90)


def animated_gif() -> bytes:
    """The selfie, then a black frame: only the first frame is read."""
    frames = [astronaut().convert("P"), Image.new("P", astronaut().size)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200)


# --- what a case sends, and what the user must get back -------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What to wait for: the reply to a message, or the answer to a button press."""

    message_id: int | None = None
    query_id: str | None = None


Send = Callable[[FakeTelegramAPI, JSON], Sent]


@dataclass(frozen=True)
class Case:
    id: str
    send: Send
    expect: str  # the exact words the user reads, or CARD
    note: str | None = None  # words a card's caption must also carry


@dataclass(frozen=True)
class Upload:
    """A file the user sends: as a compressed photo (Telegram's size ladder of JPEGs), or as
    a document with its bytes as they are. Discord's tests send the same bytes as the
    ``/selfie`` attachment."""

    make: Callable[[], bytes]
    file_name: str = "selfie.jpg"
    mime_type: str | None = "image/jpeg"
    as_photo: bool = False
    caption: str | None = None

    def __call__(self, fake: FakeTelegramAPI, who: JSON) -> Sent:
        if self.as_photo:
            message = fake.send_photo(who, self.make(), caption=self.caption)
        else:
            message = fake.send_document(
                who, self.make(), mime_type=self.mime_type, file_name=self.file_name
            )
        return Sent(message["message_id"])


def photo(make: Callable[[], bytes], caption: str | None = None) -> Upload:
    return Upload(make, as_photo=True, caption=caption)


def document(make: Callable[[], bytes], file_name: str, mime_type: str | None) -> Upload:
    return Upload(make, file_name, mime_type)


def command(text: str) -> Send:
    def send(fake: FakeTelegramAPI, who: JSON) -> Sent:
        return Sent(fake.send_text(who, text)["message_id"])

    return send


def other(method: str) -> Send:
    """A sticker, voice note, video or GIF, via the fake's own builders."""

    def send(fake: FakeTelegramAPI, who: JSON) -> Sent:
        return Sent(getattr(fake, method)(who)["message_id"])

    return send


def press(data: Callable[[JSON], str]) -> Send:
    """The user presses a button carrying ``data`` under a message of the bot."""

    def send(fake: FakeTelegramAPI, who: JSON) -> Sent:
        under = fake.new_message(fake.bot_user, private_chat(who), text="an old card")
        return Sent(under["message_id"], fake.press_button(who, under, data(who)))

    return send


def jpeg_doc(make: Callable[[], bytes], name: str = "selfie.jpg") -> Upload:
    return document(make, name, "image/jpeg")


def png_doc(make: Callable[[], bytes], name: str = "selfie.png") -> Upload:
    return document(make, name, "image/png")


CASES = [
    # Not a picture at all, or a broken one.
    Case("empty file", jpeg_doc(lambda: b""), images.EmptyImage.user_message),
    Case("text renamed .jpg", jpeg_doc(lambda: b"Dear diary, today I..."), images.NotAnImage.user_message),
    Case("truncated JPEG", jpeg_doc(lambda: selfie()[: len(selfie()) // 3]), images.CorruptImage.user_message),
    Case("JPEG header only", jpeg_doc(lambda: selfie()[:600]), images.CorruptImage.user_message),
    Case("PNG with a bad CRC", png_doc(bad_crc_png), images.CorruptImage.user_message),
    Case("decompression bomb", png_doc(decompression_bomb), images.ImageTooLarge.user_message),
    Case("broken HEIC", document(broken_heic, "IMG_0001.HEIC", "image/heic"), images.CorruptImage.user_message),
    Case("SVG drawing", document(lambda: b'<svg xmlns="http://www.w3.org/2000/svg"/>', "me.svg", "image/svg+xml"), images.UnsupportedFormat.user_message),
    Case("PDF file", document(lambda: b"%PDF-1.4\n%\xe2\xe3", "cv.pdf", "application/pdf"), wording.NOT_A_PHOTO),
    # Pictures of the wrong shape.
    Case("1x1 image", png_doc(lambda: encode(Image.new("RGB", (1, 1)), "PNG")), images.ImageTooSmall.user_message),
    Case("20000x20 strip", png_doc(lambda: encode(Image.new("L", (20_000, 20), 128), "PNG")), images.ImageTooSmall.user_message),
    # Pictures without a usable face.
    Case("all black", photo(lambda: plain("black")), service.NO_FACE),
    Case("all white", photo(lambda: plain("white")), service.NO_FACE),
    Case("pure noise", photo(noise), service.NO_FACE),
    Case("face too small", photo(tiny_face), service.NO_FACE),
    Case("RGBA with a transparent face", png_doc(transparent_face_png), service.NO_FACE),
    # Unusual but usable pictures: a card.
    Case("WebP", document(lambda: encode(astronaut(), "WEBP"), "me.webp", "image/webp"), CARD),
    Case("HEIC from an iPhone", document(heic, "IMG_0001.HEIC", "image/heic"), CARD),
    Case("HEIC file sent untyped", document(heic, "IMG_0002.heic", "application/octet-stream"), CARD),
    Case("JPEG file sent untyped", document(lambda: encode(astronaut(), "JPEG"), "IMG_2.JPG", "application/octet-stream"), CARD),
    Case("text file sent untyped", document(lambda: b"hello", "notes.txt", "application/octet-stream"), wording.NOT_A_PHOTO),
    Case("JPEG file sent with no type", document(lambda: encode(astronaut(), "JPEG"), "me.jpg", None), CARD),
    Case("animated GIF file", document(animated_gif, "me.gif", "image/gif"), CARD),
    Case("CMYK JPEG", jpeg_doc(cmyk_jpeg), CARD),
    Case("16-bit PNG", png_doc(png_16_bit), CARD),
    Case("grayscale JPEG", jpeg_doc(lambda: encode(astronaut().convert("L"))), CARD),
    Case("PNG named .jpg", jpeg_doc(lambda: encode(astronaut(), "PNG")), CARD),
    *(
        Case(f"EXIF orientation {n}", jpeg_doc(functools.partial(exif_oriented, n)), CARD)
        for n in range(1, 9)
    ),
    Case("EXIF with absurd values", jpeg_doc(absurd_exif), CARD),
    Case("a drawn cartoon face", photo(cartoon), CARD),
    Case("12 faces", photo(twelve_faces), CARD, note="12 faces:"),
    Case("RTL and emoji caption", photo(selfie, caption="\u202eمرحبا 👋🏽 \u200f שלום \U0001f3b6"), CARD),
    # Not photos.
    Case("sticker", other("send_sticker"), wording.NOT_A_PHOTO),
    Case("voice message", other("send_voice"), wording.NOT_A_PHOTO),
    Case("video", other("send_video"), wording.NOT_A_PHOTO),
    Case("GIF (Telegram animation)", other("send_animation"), wording.NOT_A_PHOTO),
    # Commands and words.
    Case("unknown command", command("/dance"), "I don't know /dance. " + TELEGRAM_HELP),
    Case("unknown command with junk", command("/x\u0000y " + "💥" * 200), TELEGRAM_HELP),
    Case("/more with junk arguments", command("/more ' OR 1=1; -- \u202e"), service.NEED_SELFIE),
    Case("/mood with junk arguments", command("/mood ../../etc/passwd"), service.NO_READING),
    Case("/mode with junk", command("/mode 'lift'; DROP TABLE users"), "Please choose a mode: /mode lift or /mode match."),
    Case("/history with junk", command("/history ∞; DROP TABLE ratings"), service.BAD_HISTORY_COUNT),
    Case("/history with a huge count", command("/history 99999999999999999999"), service.NO_HISTORY),
    Case("RTL chatter", command("مرحبا، ماذا تفعل؟ \u202e"), f"{service.HELP_SEND}\n{service.CHAT_HINT}"),
    Case("a link to a GIF", command("https://tenor.com/view/happy-dance-gif-25341"), service.LINK_NOT_PHOTO),
    Case("a link to a photo", command("me: www.example.com/selfie.jpg"), service.LINK_NOT_PHOTO),
    Case("a song shared from Spotify", command("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC?si=x"), service.SONG_LINK),
    # Buttons.
    Case("forged callback data", press(lambda who: "delete_everything"), wording.BUTTON_EXPIRED),
    Case("callback, forget for another user", press(lambda who: f"forget:yes:{who['id'] + 1}"), wording.FORGET_NOT_YOURS),
    Case("callback, overlong forged owner", press(lambda who: "forget:yes:" + "9" * 40), wording.BUTTON_EXPIRED),
    Case("forged 👍 for a song never sent", press(lambda who: "rate:up:4uLU6hMCjMI75M1A2tKUQC"), service.NOT_RATABLE),
    Case("👎 with a junk track id", press(lambda who: "rate:down:../../../etc/passwd"), wording.BUTTON_EXPIRED),
    Case("a user never seen presses Another song", press(lambda who: "more"), service.NEED_SELFIE),
]  # fmt: skip
assert len(CASES) >= 30


# --- the bot, shared by the module -------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lifter(
    tmp_path_factory: pytest.TempPathFactory, music_dir: Path
) -> AsyncIterator[MoodLifter]:
    tmp = tmp_path_factory.mktemp("bad-input")
    limits = LimitsSettings(
        photos_per_minute=10_000, actions_per_minute=10_000, max_image_bytes=MAX_IMAGE_BYTES
    )
    settings = service_settings(tmp, music_dir, limits)
    lifter = await MoodLifter.create(settings)
    await ensure_catalog(settings, lifter.store)
    try:
        yield lifter
    finally:
        await lifter.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(lifter: MoodLifter, fake: FakeTelegramAPI) -> AsyncIterator[MoodApplication]:
    telegram = TelegramSettings(
        token=Secret(fake.token), api_url=fake.base_url, file_url=fake.base_file_url
    )
    application = build_application(lifter, telegram, max_image_bytes=MAX_IMAGE_BYTES)
    async with polling(application, poll_timeout=1):
        yield application


@pytest.fixture(scope="module")
def selfie_sizes(fake: FakeTelegramAPI) -> list[JSON]:
    """The good selfie's Telegram size ladder, uploaded once and sent by every case."""
    return fake.photo_sizes(selfie())


# --- helpers -----------------------------------------------------------------------------------


def is_card(call: ApiCall) -> bool:
    return call.method == "sendPhoto" and wording.ANOTHER_SONG in [b["text"] for b in call.buttons]


async def reply_to(fake: FakeTelegramAPI, chat_id: int, message_id: int) -> ApiCall:
    """The bot's one delivered reply to a message."""
    (reply,) = await fake.wait_for(
        lambda c: (
            c.method in SENDS
            and c.chat_id == chat_id
            and c.reply_to == message_id
            and "_message_id" in c.params
        ),
        within=WAIT,
    )
    return reply


async def callback_answer(fake: FakeTelegramAPI, query_id: str) -> str:
    await fake.wait_for(
        lambda c: (
            c.method == "answerCallbackQuery" and c.params.get("callback_query_id") == query_id
        ),
        within=WAIT,
    )
    return str(fake.answered_callbacks[query_id].get("text") or "")


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_bad_input_gets_a_friendly_reply_and_the_bot_keeps_answering(
    app: MoodApplication,
    fake: FakeTelegramAPI,
    selfie_sizes: list[JSON],
    case: Case,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    who = user(50_000 + CASES.index(case), "Мария", last_name="بنت 🌙")
    chat = private_chat(who)["id"]

    sent = case.send(fake, who)
    if sent.query_id is not None:
        assert await callback_answer(fake, sent.query_id) == case.expect
        assert not fake.replies(chat)  # a refused button sends nothing else
    else:
        assert sent.message_id is not None
        reply = await reply_to(fake, chat, sent.message_id)
        if case.expect == CARD:
            assert is_card(reply), shown(reply)
            if case.note:
                assert case.note in shown(reply), shown(reply)
        else:
            assert not is_card(reply)
            assert shown(reply) == case.expect
        if case.expect in (images.UnsupportedFormat.user_message, images.EmptyImage.user_message):
            assert PLEASE_JPEG_OR_PNG in shown(reply)

    # Nothing failed on the way, and the same user still gets a song for a good selfie.
    good = fake.send_photo(who, b"", sizes=selfie_sizes)
    assert is_card(await reply_to(fake, chat, good["message_id"]))
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures
    assert not [c for c in fake.replies(chat) if shown(c) == wording.SOMETHING_WENT_WRONG]
