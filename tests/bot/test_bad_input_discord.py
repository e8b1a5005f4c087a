"""The bad-input table's files, sent to the Discord bot as the ``/selfie`` attachment.

The same bytes as the Telegram cases (:mod:`tests.bot.test_bad_input`), through the real
discord.py client on SimCord's in-memory Discord and the real core. Each case is a new member;
each must get the exact words (or a song card), raise nothing, and still get a card for a good
selfie afterwards. One SimCord environment and one core serve the whole module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import simcord

from bot import wording
from bot.discord_bot import DiscordOptions, build_client
from core import images
from core.catalog import ensure_catalog
from core.config import LimitsSettings
from core.service import MoodLifter
from tests.bot.conftest import service_settings
from tests.bot.test_bad_input import (
    CARD,
    CASES,
    MAX_IMAGE_BYTES,
    PLEASE_JPEG_OR_PNG,
    Case,
    Upload,
    selfie,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Discord sees a file's type from its name before anything is downloaded.
DISCORD_SAYS = {"PDF file": wording.NOT_A_PHOTO}
# Every file case, except six of the eight EXIF orientations (the Telegram table has them all;
# the adapter's part is the same for each).
UPLOADS = [
    case
    for case in CASES
    if isinstance(case.send, Upload)
    and not (case.id.startswith("EXIF orientation") and case.id[-1] not in "16")
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(
    tmp_path_factory: pytest.TempPathFactory, music_dir: Path
) -> AsyncIterator[simcord.Env]:
    tmp = tmp_path_factory.mktemp("bad-input-discord")
    limits = LimitsSettings(
        photos_per_minute=10_000, actions_per_minute=10_000, max_image_bytes=MAX_IMAGE_BYTES
    )
    settings = service_settings(tmp, music_dir, limits)
    lifter = await MoodLifter.create(settings)
    await ensure_catalog(settings, lifter.store)
    client = build_client(lifter, DiscordOptions(max_image_bytes=MAX_IMAGE_BYTES))
    running = simcord.Env(client, settle_timeout=120.0)
    await running.start()
    try:
        yield running
    finally:
        await running.shutdown()
        await lifter.close()


@pytest.fixture(scope="module")
def channel(env: simcord.Env) -> simcord.ChannelHandle:
    return env.create_guild("Strangers").create_text_channel("selfies")


def answer(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    """What the user sees: the completed 'thinking…' message, or the direct reply."""
    message = result.followups[-1] if result.followups else result.response
    assert message is not None, result
    return message


def is_card(message: simcord.ResponseMessage) -> bool:
    return len(message.embeds) == 1 and bool(message.embeds[0].url)


@pytest.mark.parametrize("case", UPLOADS, ids=[case.id for case in UPLOADS])
async def test_bad_file_gets_a_friendly_reply_and_the_bot_keeps_answering(
    env: simcord.Env, channel: simcord.ChannelHandle, case: Case
) -> None:
    assert isinstance(case.send, Upload)
    member = channel.guild.add_member(env.create_user(f"stranger{UPLOADS.index(case)}"))
    errors_before = len(env.errors)

    result = await member.slash(channel, "selfie", photo=(case.send.file_name, case.send.make()))
    message = answer(result)
    expected = DISCORD_SAYS.get(case.id, case.expect)
    if expected == CARD:
        assert is_card(message), message.content
        if case.note:
            assert case.note in (message.embeds[0].footer.text or "")
    else:
        assert not message.embeds
        assert message.content == expected
        if expected == images.UnsupportedFormat.user_message:
            assert PLEASE_JPEG_OR_PNG in message.content

    good = await member.slash(channel, "selfie", photo=("me.jpg", selfie()))
    assert is_card(answer(good))
    assert len(env.errors) == errors_before
