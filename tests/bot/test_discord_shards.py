"""Discord sharding: the settings build discord.py's AutoShardedClient, and it serves commands
on every shard it runs (SimCord simulates the sharded gateway)."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
import simcord

from bot import wording
from bot.discord_bot import (
    SYNTAX,
    DiscordOptions,
    MoodLiftBot,
    ShardedMoodLiftBot,
    build_client,
)
from core.config import DiscordSettings, LimitsSettings, Settings, load_settings
from core.errors import ConfigError
from core.service import MoodLifter
from tests.bot.conftest import service_settings

pytestmark = pytest.mark.simcord(settle_timeout=120.0)


@pytest.fixture
def settings(tmp_path: Path, music_dir: Path) -> Settings:
    return service_settings(tmp_path, music_dir, LimitsSettings(photos_per_minute=100))


@pytest.fixture
def simcord_bot(service: MoodLifter) -> MoodLiftBot:
    """Shards 0 and 2 of 3, as one of several processes would run them."""
    section = load_settings(
        env={"MOODLIFT_DISCORD_SHARD_COUNT": "3", "MOODLIFT_DISCORD_SHARD_IDS": "0,2"}
    ).discord
    return build_client(service, section)


async def test_a_sharded_bot_answers_on_each_of_its_shards(
    simcord_env: simcord.Env, service: MoodLifter
) -> None:
    bot = simcord_env.bot
    assert isinstance(bot, ShardedMoodLiftBot) and isinstance(bot, discord.AutoShardedClient)
    assert (bot.shard_count, sorted(bot.shards)) == (3, [0, 2])
    for shard_id in (0, 2):  # a server on each shard this process runs
        guild = simcord_env.create_guild(f"server on shard {shard_id}", shard_id=shard_id)
        assert bot.get_guild(guild.id).shard_id == shard_id
        member = guild.add_member(simcord_env.create_user(f"user{shard_id}"))
        result = await member.slash(guild.create_text_channel("music"), "help")
        message = result.followups[-1] if result.followups else result.response
        assert message is not None
        assert message.content == service.help(wording.DISCORD_HOW_TO_SEND, SYNTAX).text


def test_unsharded_by_default_and_bad_shard_settings_fail_fast() -> None:
    assert DiscordOptions.from_settings(DiscordSettings()).sharded is False
    assert DiscordOptions.from_settings(DiscordSettings(shard_count=0)).sharded  # auto
    with pytest.raises(ConfigError, match=r"needs discord\.shard_count"):
        DiscordOptions.from_settings(DiscordSettings(shard_ids=(0,)))
    with pytest.raises(ConfigError, match=r"must lie in 0\.\.1"):
        DiscordOptions.from_settings(DiscordSettings(shard_count=2, shard_ids=(2,)))
