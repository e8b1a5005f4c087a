"""The Discord adapter: slash commands, photos sent to it, buttons, over one :class:`MoodLifter`.

Every handler is thin: it reads the interaction (or message: a DM, or a server message that
mentions it), calls one method of the core service
and renders the :class:`~core.replies.Reply` it gets back in Discord's idiom — an embed with a
"Open in Spotify" link and a persistent "Another song" button for a track, an embed (and chart)
for ``/mood``, a short message for a notice. The words come from :mod:`bot.wording`, shared with
the Telegram adapter.

No privileged intent is needed: a slash command's attachment option carries the photo, and
Discord shows a bot without the message-content intent the attachments of messages in a DM
with it and of server messages that mention it (all other server messages come blank).
Named ``discord_bot`` so that it cannot shadow the ``discord`` package inside ``bot/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import wording
from bot.log_redaction import Redactor
from bot.presses import PressesInFlight
from core.config import MAX_IMAGE_BYTES
from core.errors import ConfigError
from core.palette import mood_colour
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
from core.service import HISTORY_MAX, CommandSyntax, UserRef, asks_for_more

if TYPE_CHECKING:
    from core.config import DiscordSettings, Settings
    from core.service import MoodLifter

log = logging.getLogger(__name__)

ANOTHER_SONG_ID = "moodlift:another-song"
"""The fixed ``custom_id`` of the "Another song" button: clicks keep working after a restart."""
RATE_ID = re.compile(r"moodlift:rate:(?P<rating>up|down):(?P<track>[0-9A-Za-z]{22})")
"""The ``custom_id`` of 👍 / 👎: the track, never a user — a click rates for whoever clicks, and
only a song the core sent them. A dynamic item, so old cards keep working after a restart."""
RATINGS = {"up": 1, "down": -1}
MOOD_LOOKUP_WAIT = 1.5  # seconds /more may look before deferring (Discord allows 3 in all)
FORGET_ID = re.compile(r"moodlift:forget:(?P<answer>yes|no):(?P<owner>[0-9]{1,20})")
"""The ``custom_id`` of the /forget answers: only the user who asked may answer, and the
buttons keep working after a restart (a dynamic item, like 👍 / 👎)."""


SYNTAX = CommandSyntax(mode="/mode mode:{mode}", history="/history count:{count}")
"""How help texts write a command's argument here: slash commands take named options."""


def _has_a_button(custom_id: str) -> bool:
    """Whether a button registered in ``setup_hook`` takes this ``custom_id`` (the card view's
    "Another song", the dynamic 👍 / 👎 and /forget answers); keep in step with it."""
    return custom_id == ANOTHER_SONG_ID or any(
        pattern.fullmatch(custom_id) for pattern in (RATE_ID, FORGET_ID)
    )


EMBED_TEXT_LIMIT = 4096  # an embed description

CHART_FILENAME = "mood.png"
_IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
)


@dataclass(frozen=True)
class DiscordOptions:
    """What the adapter needs from the settings (``[discord]`` and ``[limits]``)."""

    test_guild_id: int | None = None  # sync commands to this guild only (instant); else globally
    ephemeral: bool = False  # in servers, song cards too only for the user (personal answers are)
    max_image_bytes: int = MAX_IMAGE_BYTES
    sync_commands: bool = True
    # Sharding: None runs one gateway connection; 0 lets Discord recommend how many shards;
    # N runs N. ``shard_ids`` are the shards this process runs (default: all of them).
    shard_count: int | None = None
    shard_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.shard_ids and not self.shard_count:
            raise ConfigError("discord.shard_ids needs discord.shard_count (the total, > 0)")
        if self.shard_count and any(not 0 <= i < self.shard_count for i in self.shard_ids):
            raise ConfigError(
                f"discord.shard_ids {list(self.shard_ids)} must lie in 0..{self.shard_count - 1}"
            )

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @classmethod
    def from_settings(cls, settings: Settings | DiscordSettings) -> DiscordOptions:
        """Read the ``[discord]`` section, and the image byte limit when given all settings."""
        section: DiscordSettings = getattr(settings, "discord", settings)
        limits = getattr(settings, "limits", None)
        return cls(
            test_guild_id=section.test_guild_id,
            ephemeral=section.ephemeral,
            shard_count=section.shard_count,
            shard_ids=section.shard_ids,
            max_image_bytes=limits.max_image_bytes if limits is not None else MAX_IMAGE_BYTES,
        )


class RedactInteractionTokens(Redactor):
    """Interaction tokens (a bearer credential for answering an interaction, valid 15 minutes)
    travel in REST paths, which discord.py logs at DEBUG, and in the gateway's events, which it
    logs whole at DEBUG: replace them with ``<token>``. Those events also carry attachment
    links, with which anyone could fetch a user's selfie for a day: ``<attachment>``."""

    LOGGERS = ("discord.http", "discord.webhook.async_", "discord.gateway")
    _IN_PATH = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._-]{20,}")
    _IN_EVENT = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")
    _ATTACHMENT = re.compile(
        r"""https://(?:cdn\.discordapp\.com|media\.discordapp\.net)/[^\s'"]+"""
    )

    def scrub(self, text: str) -> str:
        text = self._IN_PATH.sub(r"\1<token>", text)
        text = self._IN_EVENT.sub(r"\1<token>", text)
        return self._ATTACHMENT.sub("<attachment>", text)


@dataclass(frozen=True)
class _Channel:
    """Where a message to the bot came from, and how to answer it there."""

    message: discord.Message
    permissions: discord.Permissions | None  # the bot's in a server channel; None in a DM
    named: bool  # the message names the bot (a DM, or "@bot" in its text), not just a reply

    @classmethod
    def of(cls, message: discord.Message, me: discord.ClientUser | None) -> _Channel | None:
        """The channel of a DM, or of a server message addressed to the bot — "@bot" in it, or
        a reply to it (with its ping) — where it may answer; None for anything else (server
        chatter, a channel where it may not speak)."""
        channel = message.channel
        if message.guild is None:
            # A channel of a server not in the cache comes as a partial one with a guild id.
            return cls(message, None, True) if getattr(channel, "guild_id", None) is None else None
        if me is None or not any(user.id == me.id for user in message.mentions):
            return None
        try:
            permissions = channel.permissions_for(message.guild.me)
        except discord.ClientException:  # a thread whose parent channel is not cached
            return None
        thread = isinstance(channel, discord.Thread)
        if not (permissions.send_messages_in_threads if thread else permissions.send_messages):
            return None
        return cls(message, permissions, me.id in message.raw_mentions)

    async def send(self, **kwargs: Any) -> discord.Message:
        """Answer in the channel; in a server as a reply to the message (without a ping), so
        it is clear whose photo a card is for — also when the message was deleted meanwhile.
        Without Read Message History a reply is refused: the answer names the author instead
        (a mention that does not ping)."""
        if self.permissions is not None and self.permissions.read_message_history:
            reference = self.message.to_reference(fail_if_not_exists=False)
            kwargs |= {"reference": reference, "mention_author": False}
        elif self.permissions is not None:
            said = kwargs.get("content")
            mention = self.message.author.mention
            kwargs |= {
                "content": f"{mention} {said}" if said else mention,
                "allowed_mentions": discord.AllowedMentions.none(),
            }
        return await self.message.channel.send(**kwargs)

    async def say(self, text: str) -> None:
        """A notice (help, "not a photo", "slow down"...). A channel that refuses the bot
        (DMs closed, the bot blocked or muted) is logged, not raised: nothing broke on our
        side, and an apology would be refused the same way."""
        try:
            await self.send(content=text)
        except discord.Forbidden as refused:
            _log_refusal(refused)


def _log_refusal(refused: discord.Forbidden) -> None:
    """Missing permissions, DMs closed, the bot blocked: no error of ours."""
    log.info("the channel refuses the bot's answer (%s)", refused.text or refused.status)


class MoodLiftBot(discord.Client):
    """A ``discord.Client`` with an app-command tree, holding the core service it serves."""

    def __init__(self, service: MoodLifter, options: DiscordOptions, **client: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channel and guild cache for interactions
        intents.dm_messages = True  # photos sent to the bot in a DM
        # Photos in server channels that mention the bot (Discord shows a bot the content of
        # those without the privileged message-content intent; all other messages come blank).
        intents.guild_messages = True
        super().__init__(
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,  # server messages pass by in numbers; none is looked up later
            **client,
        )
        RedactInteractionTokens().install()
        self.service = service
        self.options = options
        self.presses = PressesInFlight()
        self._handlers: set[asyncio.Task[Any]] = set()  # see handling()
        # Installed to servers only, used in servers and the bot's DMs: a user-installed app
        # would also run in group DMs and others' DMs, which the bot would take for its own DM.
        self.tree = _CommandTree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True),
        )
        self.tree.error(self.on_app_command_error)
        _add_commands(self.tree)

    async def setup_hook(self) -> None:
        """Re-attach the persistent card buttons and sync the slash commands."""
        self.add_view(CardView())
        self.add_dynamic_items(RateButton, ForgetButton)
        if not self.options.sync_commands:
            return
        if self.options.test_guild_id is not None:
            guild = discord.Object(id=self.options.test_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to test guild %s", len(synced), guild.id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    def handling(self) -> None:
        """Count the running task (a message's handler, a command, a button press) as work a
        stop finishes (:meth:`finish_handling`) before the connection closes."""
        task = asyncio.current_task()
        if task is not None and task not in self._handlers:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def finish_handling(self) -> None:
        """Return when the handlers running now, and those that start meanwhile (the gateway is
        still open), are done; a caller bounds the wait (:attr:`unfinished` then says what is
        left)."""
        while self._handlers:
            await asyncio.wait(set(self._handlers))

    @property
    def unfinished(self) -> int:
        """Handlers still running (see :meth:`handling`)."""
        return len(self._handlers)

    def ephemeral_for(self, interaction: discord.Interaction, *, personal: bool = False) -> bool:
        """Private answers in servers when configured, and always for what is only the user's
        business (their readings, history, settings, /forget); in DMs all are private anyway."""
        return interaction.guild_id is not None and (self.options.ephemeral or personal)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A button press that none of the bot's buttons claims (a card from an older version,
        a forged id) gets the same words as on Telegram instead of "This interaction failed"."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        if _has_a_button(custom_id):
            return  # it answers for itself
        log.info("answered an unknown button of %d characters", len(custom_id))
        try:
            await interaction.response.send_message(wording.BUTTON_EXPIRED, ephemeral=True)
        except discord.HTTPException:
            log.warning("could not answer an unknown button", exc_info=True)

    async def on_ready(self) -> None:
        """Log who we are once connected."""
        log.info("discord bot ready as %s (%s)", self.user, getattr(self.user, "id", "?"))

    async def on_message(self, message: discord.Message) -> None:
        """Photos sent to the bot get the same answer as ``/selfie``, each its own: in a DM (also
        a forwarded message's), or in a server channel in a message that mentions the bot. A
        sticker or another file gets a hint, one of the bot's cards forwarded back says so,
        "more" (or "another song please") is /more, other text hears how to send a selfie;
        system messages (pins, calls) and server messages for others get nothing and do not
        count toward the flood limit."""
        if message.author.bot or message.type not in _ORDINARY:
            return
        where = _Channel.of(message, self.user)
        if where is None:
            return
        self.handling()
        # A forward of one of the bot's own cards: its drawn picture is no selfie.
        cards = [shot for shot in message.message_snapshots if _is_card(shot.embeds)]
        snapshots = [shot for shot in message.message_snapshots if shot not in cards]
        files = [*message.attachments, *(a for shot in snapshots for a in shot.attachments)]
        photos = [a for a in files if _looks_like_image(a)]
        if not (photos or where.named):
            return  # words or a sticker replying to a card: chatter, as on Telegram
        verdict = self.service.throttle(user_ref(message.author))
        if not verdict.allowed:
            if verdict.notice is not None:
                await where.say(verdict.notice.text)
            return
        if where.permissions is not None and self.options.ephemeral:
            # Answers in this server are meant to be private: none of them in the open.
            await where.say(wording.PRIVATE_ANSWERS_HERE)
            return
        if not photos:
            if cards and not files:
                await where.say(wording.OWN_CARD)
            elif files or message.stickers or any(shot.stickers for shot in snapshots):
                await where.say(wording.NOT_A_PHOTO)
            elif asks_for_more(_MENTION.sub(" ", message.content)):  # "more", "another one"
                if where.permissions is not None and not where.permissions.embed_links:
                    await where.say(wording.NEEDS_EMBED_LINKS)
                    return
                await self._send(message, where, await self.service.more(user_ref(message.author)))
            else:
                how = wording.discord_how_to_send(self.options.ephemeral)
                await where.say(self.service.chat(message.content, how).text)
            return
        if where.permissions is not None and not where.permissions.embed_links:
            await where.say(wording.NEEDS_EMBED_LINKS)
            return
        # Of several photos, each notice is said once, after the cards, naming its files:
        # "a.jpg, c.jpg: I couldn't find a face…"; "too many photos" names every one left unread.
        notices: dict[str, list[str]] | None = {} if len(photos) > 1 else None
        for n, photo in enumerate(photos):
            unread = _names([p.filename for p in photos[n:]]) if notices is not None else None
            if not await self._answer_photo(message, where, photo, notices, unread):
                break
        else:
            others = [a.filename for a in files if not _looks_like_image(a)]
            if others:  # a PDF beside the selfies: say why it got no answer
                notices = notices if notices is not None else {}
                notices.setdefault(wording.NOT_A_PHOTO, []).extend(others)
        for text, names in (notices or {}).items():
            await where.say(_about(_names(names), text))

    async def _answer_photo(
        self,
        message: discord.Message,
        where: _Channel,
        photo: discord.Attachment,
        notices: dict[str, list[str]] | None = None,
        unread: str | None = None,
    ) -> bool:
        """Answer one photo of a message; False when the user may send no more for now (then
        ``unread`` names the photos left unread). ``notices``: where one of several photos
        leaves its notice (by text, with the files it is about) instead of saying it."""
        problem = attachment_problem(photo, self.options.max_image_bytes)
        if problem is not None:
            await self._notice(where, problem, photo, notices)
            return True
        admission = self.service.admit(user_ref(message.author))  # before the download
        if not admission.allowed:
            if admission.notice is not None:
                await where.say(_about(unread, admission.notice.text))
            return False
        async with self.service.reading(user_ref(message.author)), _typing(message.channel):
            image = await download(photo)
            if image is None:
                await self._notice(where, wording.PHOTO_GONE, photo, notices)
                return True
            reply = await self.service.read_photo(user_ref(message.author), image)
            if isinstance(reply, Notice):
                await self._notice(where, notice_text(reply), photo, notices)
                return True
            await self._send(message, where, reply)
        return True

    async def _send(self, message: discord.Message, where: _Channel, reply: Reply) -> None:
        """Answer ``message`` with ``reply``; a card Discord refuses is not used up."""
        try:
            await where.send(**_allowed(where.permissions, await render(self.service, reply)))
        except discord.HTTPException as refused:
            if isinstance(reply, TrackCard):  # a song never heard is not used up
                await self.service.undelivered(user_ref(message.author), reply)
            if not isinstance(refused, discord.Forbidden):
                raise
            _log_refusal(refused)  # an apology would be refused the same way

    @staticmethod
    async def _notice(
        where: _Channel,
        text: str,
        photo: discord.Attachment,
        notices: dict[str, list[str]] | None,
    ) -> None:
        """Say ``text`` about a message's only photo, or leave it among ``notices``."""
        if notices is None:
            await where.say(text)
        else:
            notices.setdefault(text, []).append(photo.filename)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """Errors outside app commands and views (the message handler: DMs and server
        mentions): log, then apologise."""
        log.error("unhandled error in %s", event_method, exc_info=sys.exc_info())
        message = args[0] if args and isinstance(args[0], discord.Message) else None
        where = (
            _Channel.of(message, self.user) if event_method == "on_message" and message else None
        )
        if where is not None:  # as a reply to the message, as its answer would have been
            try:
                await where.say(wording.SOMETHING_WENT_WRONG)
            except discord.HTTPException:
                log.warning("could not tell the user about the error", exc_info=True)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The one error handler for commands and buttons: log with the traceback, apologise."""
        original = getattr(error, "original", error)
        if interaction.command is not None:
            what = f"/{interaction.command.qualified_name}"
        else:
            what = str((interaction.data or {}).get("custom_id", interaction.type))
        log.error("error while handling %s", what, exc_info=original)
        try:
            if interaction.response.is_done():
                # After a defer this completes the "thinking…" message, as public as it was.
                await interaction.followup.send(wording.SOMETHING_WENT_WRONG, ephemeral=True)
            else:
                await interaction.response.send_message(
                    wording.SOMETHING_WENT_WRONG, ephemeral=True
                )
        except discord.HTTPException:
            log.warning("could not tell the user about the error", exc_info=True)


class _CommandTree(app_commands.CommandTree):
    """The slash commands, behind the flood gate."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await _let_in(interaction)


async def _let_in(interaction: discord.Interaction) -> bool:
    """The flood gate for commands and buttons: beyond what a person does by hand, the user is
    told once (only them) and the rest is dropped; a dropped button press is acknowledged
    without a word, so its spinner stops instead of ending in "This interaction failed", and a
    dropped command gets one short line (only them), since Discord insists on an answer.
    It runs first in the task of every command and button, so it also counts that task as
    work a stop finishes."""
    _bot(interaction).handling()
    verdict = _bot(interaction).service.throttle(user_ref(interaction.user))
    if verdict.allowed:
        return True
    try:
        if verdict.notice is not None:
            await interaction.response.send_message(verdict.notice.text, ephemeral=True)
        elif interaction.type is discord.InteractionType.component:
            await interaction.response.defer()
        else:  # a command must be answered, or Discord says "The application did not respond"
            await interaction.response.send_message(wording.STILL_CATCHING_UP, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not answer a throttled interaction", exc_info=True)
    return False


class ShardedMoodLiftBot(MoodLiftBot, discord.AutoShardedClient):
    """The same bot over several gateway connections, for bots in very many servers (Discord
    requires sharding from 2,500). Several processes can split the shards between them."""


def build_client(
    service: MoodLifter, settings: Settings | DiscordSettings | DiscordOptions
) -> MoodLiftBot:
    """The Discord client for ``service``; start it with ``await client.start(token)``.

    ``settings`` is the application's settings (or just their ``discord`` section); tests pass
    :class:`DiscordOptions` directly. Nothing connects until ``start``.
    """
    options = (
        settings if isinstance(settings, DiscordOptions) else DiscordOptions.from_settings(settings)
    )
    # The bot never joins a voice channel: discord.py's start-up warnings that its voice
    # libraries are missing ("voice will NOT be supported") only alarm whoever runs it.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    if not options.sharded:
        return MoodLiftBot(service, options)
    return ShardedMoodLiftBot(
        service,
        options,
        shard_count=options.shard_count or None,  # None: as many as Discord recommends
        shard_ids=list(options.shard_ids) or None,
    )


# --------------------------------------------------------------------------- commands


def _bot(interaction: discord.Interaction) -> MoodLiftBot:
    client = interaction.client
    assert isinstance(client, MoodLiftBot)
    return client


def _add_commands(tree: app_commands.CommandTree) -> None:
    """Register the slash commands; each one parses, calls one core method and renders."""

    @tree.command(name="selfie", description="Send a selfie and get a song for your mood.")
    @app_commands.describe(photo="A photo of your face (JPEG, PNG or HEIC)")
    async def selfie(interaction: discord.Interaction, photo: discord.Attachment) -> None:
        bot = _bot(interaction)
        if await _cannot_show_cards(interaction):
            return
        problem = attachment_problem(photo, bot.options.max_image_bytes)
        if problem is not None:
            await interaction.response.send_message(problem, ephemeral=True)
            return
        admission = bot.service.admit(user_ref(interaction.user), every_refusal=True)
        if not admission.allowed:  # before the download
            await interaction.response.send_message(notice_text(admission.notice), ephemeral=True)
            return
        await interaction.response.defer(thinking=True, ephemeral=bot.ephemeral_for(interaction))
        async with bot.service.reading(user_ref(interaction.user)):
            image = await download(photo)
            if image is None:
                await send_followup(interaction, Notice(NoticeKind.BAD_IMAGE, wording.PHOTO_GONE))
                return
            reply = await bot.service.read_photo(user_ref(interaction.user), image)
            await send_followup(interaction, reply)

    @tree.command(name="more", description="Another song for the mood of your last selfie.")
    async def more(interaction: discord.Interaction) -> None:
        await _another_song(interaction)

    @tree.command(name="mood", description="What I read in your last selfie.")
    async def mood(interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        if await _cannot_show_cards(interaction):
            return
        private = bot.ephemeral_for(interaction, personal=True)
        await interaction.response.defer(thinking=True, ephemeral=private)
        reply = await bot.service.mood(user_ref(interaction.user))
        await send_followup(interaction, reply, personal=True)

    @tree.command(name="mode", description="Lift your mood, or match it.")
    @app_commands.describe(mode="lift: cheer me up · match: fit how I feel (empty: show current)")
    @app_commands.choices(
        mode=[
            app_commands.Choice(name="lift — cheer me up", value="lift"),
            app_commands.Choice(name="match — fit how I feel", value="match"),
        ]
    )
    async def mode(
        interaction: discord.Interaction, mode: app_commands.Choice[str] | None = None
    ) -> None:
        bot = _bot(interaction)
        private = bot.ephemeral_for(interaction, personal=True)
        await interaction.response.defer(thinking=True, ephemeral=private)
        value = mode.value if mode is not None else None
        reply = await bot.service.set_mode(user_ref(interaction.user), value, SYNTAX)
        await send_followup(interaction, reply, personal=True)

    @tree.command(name="history", description="The songs I sent you, with your ratings.")
    @app_commands.describe(
        count=f"How many songs, newest first (default 10, at most {HISTORY_MAX})"
    )
    async def history(
        interaction: discord.Interaction,
        count: app_commands.Range[int, 1, HISTORY_MAX] | None = None,
    ) -> None:
        bot = _bot(interaction)
        if await _cannot_show_cards(interaction):
            return
        private = bot.ephemeral_for(interaction, personal=True)
        await interaction.response.defer(thinking=True, ephemeral=private)
        reply = await bot.service.history(user_ref(interaction.user), count)
        await send_followup(interaction, reply, personal=True)

    @tree.command(name="forget", description="Delete everything I know about you.")
    async def forget(interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        # Deferred first: /forget waits (up to 10 s) for the user's photo on its way, longer
        # than Discord waits for a first answer.
        private = bot.ephemeral_for(interaction, personal=True)
        await interaction.response.defer(thinking=True, ephemeral=private)
        reply = await bot.service.forget(user_ref(interaction.user), confirmed=False)
        if isinstance(reply, Notice) and reply.kind is NoticeKind.CONFIRM_FORGET:
            await interaction.followup.send(
                reply.text, view=forget_view(interaction.user.id), ephemeral=private
            )
            return
        await send_followup(interaction, reply, personal=True)

    @tree.command(name="help", description="How this bot works.")
    async def help_(interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        reply = bot.service.help(wording.discord_how_to_send(bot.options.ephemeral), SYNTAX)
        await send_response(interaction, reply, personal=True)


async def _another_song(interaction: discord.Interaction) -> None:
    """``/more`` and the "Another song" button: the next unseen track for the last mood.

    The button may be pressed under someone else's card: it defers without a "thinking"
    message, so a notice (no selfie yet) reaches only the presser, a card as usual."""
    bot = _bot(interaction)
    if await _cannot_show_cards(interaction):
        return
    pressed = interaction.type is discord.InteractionType.component
    if pressed:
        await interaction.response.defer()
    else:
        # Discord fixes who sees the answer when it is deferred: "send a selfie first" is
        # for the asker alone, a song as public as the channel's cards.
        private = bot.ephemeral_for(interaction) or (
            interaction.guild_id is not None and not await _may_have_a_mood(bot, interaction)
        )
        await interaction.response.defer(thinking=True, ephemeral=private)
    reply = await bot.service.more(user_ref(interaction.user))
    if pressed and isinstance(reply, Notice):
        await interaction.followup.send(notice_text(reply), ephemeral=True)
        return
    if pressed and isinstance(reply, TrackCard) and _for_all_to_see(bot, interaction):
        # It comes under someone's card, for all to see: say whose song this one is.
        for_whom = wording.FOR_WHOM.format(name=interaction.user.display_name)
        reply = dataclasses.replace(reply, notes=(*reply.notes, for_whom))
    await send_followup(interaction, reply)


async def _may_have_a_mood(bot: MoodLiftBot, interaction: discord.Interaction) -> bool:
    """The service's answer, if the store gives it in time for Discord's three seconds to
    acknowledge; else yes (an asker of /more most likely has a mood: their song is public)."""
    try:
        async with asyncio.timeout(MOOD_LOOKUP_WAIT):
            return await bot.service.may_have_a_mood(user_ref(interaction.user))
    except TimeoutError:
        log.info("/more: the store was slow to say whether a mood is stored; answering publicly")
        return True


def _for_all_to_see(bot: MoodLiftBot, interaction: discord.Interaction) -> bool:
    return interaction.guild_id is not None and not bot.ephemeral_for(interaction)


async def _cannot_show_cards(interaction: discord.Interaction) -> bool:
    """In a server channel where the bot may not embed links, Discord refuses its cards (an
    app's answers there are held to its own permissions): say so before any work is done,
    so no song is spent on an answer that cannot arrive."""
    if interaction.guild_id is None or interaction.app_permissions.embed_links:
        return False
    await interaction.response.send_message(wording.NEEDS_EMBED_LINKS, ephemeral=True)
    return True


# --------------------------------------------------------------------------- views


class AnotherSongButton(discord.ui.Button["CardView"]):
    """The persistent button under every card; it acts for whoever clicks it."""

    def __init__(self) -> None:
        super().__init__(
            label=wording.ANOTHER_SONG,
            style=discord.ButtonStyle.primary,
            emoji="🎵",
            custom_id=ANOTHER_SONG_ID,
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        """Same as ``/more`` (a double click: one song)."""
        async with _one_press(interaction, "more") as first:
            if first:
                await _another_song(interaction)


class RateButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=RATE_ID):
    """👍 or 👎 under a card; the click rates the card's song for whoever clicks, quietly."""

    def __init__(self, rating: str, track_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=wording.LIKE if rating == "up" else wording.DISLIKE,
                style=discord.ButtonStyle.secondary,
                custom_id=f"moodlift:rate:{rating}:{track_id}",
                row=1,
            )
        )
        self.rating = rating
        self.track_id = track_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RateButton:
        """Rebuild the button from its ``custom_id`` (any card, from any earlier run)."""
        return cls(match["rating"], match["track"])

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await _let_in(interaction)

    async def callback(self, interaction: discord.Interaction) -> None:
        """Store the rating and say so in a message only the clicker sees (a double click:
        once; 👎 right after 👍 counts, to change one's mind)."""
        async with _one_press(interaction, f"rate:{self.rating}") as first:
            if first:
                await self._rate(interaction)

    async def _rate(self, interaction: discord.Interaction) -> None:
        bot = _bot(interaction)
        try:
            await interaction.response.defer(thinking=True, ephemeral=True)
            reply = await bot.service.rate(
                user_ref(interaction.user), self.track_id, RATINGS[self.rating]
            )
            await interaction.followup.send(notice_text(reply), ephemeral=True)
        except Exception as error:  # the same one handler as every other command and button
            await bot.on_app_command_error(interaction, _wrap(error))


class CardView(discord.ui.View):
    """Under a track card: "Open in Spotify" (a link) and "Another song" (persistent); below
    them 👍 / 👎 for that track (dynamic items, registered in ``setup_hook``)."""

    def __init__(self, spotify_url: str | None = None, track_id: str | None = None) -> None:
        super().__init__(timeout=None)
        if spotify_url:
            self.add_item(discord.ui.Button(label=wording.OPEN_IN_SPOTIFY, url=spotify_url))
        self.add_item(AnotherSongButton())
        if track_id is not None and RATE_ID.fullmatch(f"moodlift:rate:up:{track_id}"):
            self.add_item(RateButton("up", track_id))
            self.add_item(RateButton("down", track_id))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        return await _let_in(interaction)

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        """Button errors go to the same handler as command errors."""
        await _bot(interaction).on_app_command_error(interaction, _wrap(error))


class ForgetButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=FORGET_ID):
    """ "Yes, forget me" or "No, keep it" under the /forget question; only the asker may answer,
    and the answer takes the question's place."""

    def __init__(self, answer: str, owner_id: int) -> None:
        yes = answer == "yes"
        super().__init__(
            discord.ui.Button(
                label=wording.FORGET_YES if yes else wording.FORGET_NO,
                style=discord.ButtonStyle.danger if yes else discord.ButtonStyle.secondary,
                custom_id=f"moodlift:forget:{answer}:{owner_id}",
            )
        )
        self.answer = answer
        self.owner_id = owner_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ForgetButton:
        """Rebuild the button from its ``custom_id`` (any question, from any earlier run)."""
        return cls(match["answer"], int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Refuse clicks from anyone but the asker (public messages in servers)."""
        if not await _let_in(interaction):
            return False
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(wording.FORGET_NOT_YOURS, ephemeral=True)
            return False
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        """Forget the user for real (or not) and say so in place of the question (a double
        click: once, so "Done" is not replaced by "nothing stored")."""
        bot = _bot(interaction)
        async with _one_press(interaction, "forget") as first:
            if first:
                await self._answer(interaction, bot)

    async def _answer(self, interaction: discord.Interaction, bot: MoodLiftBot) -> None:
        try:
            await interaction.response.defer()  # acknowledged at once: the store may be slow
            if self.answer == "yes":
                reply = await bot.service.forget(user_ref(interaction.user), confirmed=True)
                text = notice_text(reply)
            else:
                text = (await bot.service.keep(user_ref(interaction.user))).text
            await interaction.edit_original_response(content=text, view=None)
        except Exception as error:  # the same one handler as every other command and button
            await bot.on_app_command_error(interaction, _wrap(error))


@contextlib.asynccontextmanager
async def _one_press(interaction: discord.Interaction, which: str) -> AsyncIterator[bool]:
    """Whether this is the first click of this user on ``which`` button of this message still
    being handled; a second one (a double click) is acknowledged without a word. Another
    button of the message counts ("yes" and "no" to /forget are one ``which``)."""
    message_id = interaction.message.id if interaction.message else interaction.id
    with _bot(interaction).presses.first((message_id, interaction.user.id, which)) as first:
        if not first:
            await interaction.response.defer()
        yield first


def forget_view(owner_id: int) -> discord.ui.View:
    """The /forget question's two answers, for ``owner_id`` only."""
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetButton("yes", owner_id))
    view.add_item(ForgetButton("no", owner_id))
    view.stop()  # sent as components only: the registered dynamic item answers the clicks
    return view


def _wrap(error: Exception) -> app_commands.AppCommandError:
    if isinstance(error, app_commands.AppCommandError):
        return error
    wrapped = app_commands.AppCommandError(str(error))
    wrapped.original = error  # type: ignore[attr-defined]
    return wrapped


# --------------------------------------------------------------------------- rendering


def user_ref(user: discord.abc.User) -> UserRef:
    """The platform-neutral user for a Discord user."""
    return UserRef(platform="discord", user_id=str(user.id), name=user.display_name)


async def download(attachment: discord.Attachment) -> bytes | None:
    """The attachment's bytes, or None when Discord's file server will not give them (deleted
    with its message before the download, an expired link): the user's to resend, no error."""
    try:
        return await attachment.read()
    except discord.HTTPException as refused:
        log.info("an attachment could not be downloaded (HTTP %s)", refused.status)
        return None


def _is_card(embeds: list[discord.Embed]) -> bool:
    """Whether a message's embeds are one of the bot's song cards (by the card's song-mood
    field): forwarded, a card has no author to tell whose it is."""
    return any(field.name == wording.LABEL_MOOD for embed in embeds for field in embed.fields)


def attachment_problem(attachment: discord.Attachment, max_bytes: int) -> str | None:
    """Why an attachment cannot be a selfie (not an image, too big), checked before download:
    a 30 MB video is told it is no photo, not that it should be a smaller one."""
    if not _looks_like_image(attachment):
        return wording.NOT_A_PHOTO
    if attachment.size > max_bytes:
        return wording.too_big(max_bytes)
    return None


_ORDINARY = (discord.MessageType.default, discord.MessageType.reply)  # what people write
_MENTION = re.compile(r"<@[!&]?\d+>")  # a user's or role's mention in a message's text


@contextlib.asynccontextmanager
async def _typing(channel: discord.abc.Messageable) -> AsyncIterator[None]:
    """Show "typing…" while a photo is read. Cosmetic: Discord refusing it costs no answer."""
    indicator = channel.typing()
    try:
        await indicator.__aenter__()
    except discord.HTTPException as refused:
        log.info("no typing indicator (HTTP %s); answering without it", refused.status)
        indicator = None
    try:
        yield
    finally:
        if indicator is not None:
            await indicator.__aexit__(None, None, None)


def _names(filenames: list[str], shown: int = 3) -> str:
    """A few file names for a notice ("a.jpg, b.jpg, c.jpg and 7 more"): a message carries up
    to 10 files of long names, and a notice must stay within Discord's 2,000 characters."""
    if len(filenames) <= shown + 1:
        return ", ".join(filenames)
    return f"{', '.join(filenames[:shown])} and {len(filenames) - shown} more"


def _about(filename: str | None, text: str) -> str:
    """``text`` about one photo of several: prefixed with its file name (as written: a "*" in
    it is no Markdown)."""
    return f"{_literal(filename)}: {text}" if filename else text


def _looks_like_image(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/octet-stream":
        return content_type.startswith("image/")
    # No type, or the generic one some clients give any file: the name says what it is.
    return attachment.filename.lower().endswith(_IMAGE_SUFFIXES)


def notice_text(reply: Reply | None) -> str:
    """The text of a notice (anything else here would be a core bug; say something sane); one
    that asks for a selfie says how to send one here, which on Discord is not obvious."""
    if not isinstance(reply, Notice):
        return wording.SOMETHING_WENT_WRONG
    if reply.asks_for_a_selfie:
        return f"{reply.text}\n{wording.DISCORD_SELFIE_HOW}"
    return reply.text


# Markdown anywhere (a "[" breaks a link, a "<" a mention), and at a line's start (a heading,
# a list, a quote).
_MARKDOWN = re.compile(r"([\\*_~|`\[\]<])|^([#>-])", re.MULTILINE)


def _literal(text: str, limit: int | None = None) -> str:
    """``text`` shown as written: every Markdown character backslash-escaped, links and mention
    syntax (``<@123>``) included (discord.py's ``escape_markdown`` leaves the inside of
    ``[label](url)`` as it is). Cut before escaping to fit ``limit``: no escape is split."""
    shown = _MARKDOWN.sub(_escaped, text)
    cut = len(text)
    while limit is not None and len(shown) > limit:
        cut -= len(shown) - limit
        shown = _MARKDOWN.sub(_escaped, wording.clip(text, cut))
    return shown


def _escaped(match: re.Match[str]) -> str:
    return "\\" + match.group(0)


def card_embed(card: TrackCard) -> discord.Embed:
    """A track as an embed: title linked to Spotify, artist and album, why, small print.
    Names are shown as written: ``*``, ``_``, ``~`` or ``[link](url)`` in them is no Markdown."""
    description = "\n".join(
        _literal(line) for line in (wording.artist_line(card), wording.album_line(card)) if line
    )
    embed = discord.Embed(
        title=_literal(card.title, 256),
        url=card.spotify_url or None,
        description=description,
        colour=discord.Colour.from_rgb(*mood_colour(card.mood)),
    )
    for label, value in wording.card_facts(card):
        embed.add_field(name=label, value=_literal(value, 1024), inline=label != wording.LABEL_WHY)
    notes = wording.card_notes(card)
    if notes:
        embed.set_footer(text=wording.clip("\n".join(notes), 2048))
    return embed


def summary_embed(summary: EmotionSummary) -> discord.Embed:
    """``/mood``: the headline, all seven probabilities as a small table, when it was read."""
    table = "\n".join(wording.probability_lines(summary.probabilities))
    embed = discord.Embed(
        title=wording.emotion_line(summary.emotion, summary.confidence),
        description=f"{wording.summary_headline(summary)}\n```\n{table}\n```",
        colour=discord.Colour.from_rgb(*mood_colour(summary.mood)),
    )
    embed.set_footer(text=wording.summary_footer(summary))
    if summary.chart_png:
        embed.set_image(url=f"attachment://{CHART_FILENAME}")
    return embed


def history_embeds(history: History) -> list[discord.Embed]:
    """/history: one line per song with its link; as many embeds as the list needs."""
    lines = [history_line(n, item) for n, item in enumerate(history.items, 1)]
    footer = wording.history_footer(history)
    pages = wording.pages(lines, EMBED_TEXT_LIMIT)
    embeds = [discord.Embed(description=page) for page in pages]
    embeds[0].title = wording.history_title(history)
    if footer:
        embeds[-1].set_footer(text=footer)
    return embeds


def history_line(n: int, item: HistoryItem) -> str:
    """``"3. Title by Artist · sad → calm · 👍 · 2026-11-25 · [Spotify](link)"`` in Discord
    markdown. The title is not the link: inside a link's label Discord shows the backslashes
    that keep a name's ``*`` or ``[`` from being Markdown."""
    title = _literal(wording.clip(item.title, wording.HISTORY_TITLE_MAX))
    line = f"{n}. {title} {_literal(wording.history_details(item))}"
    if item.spotify_url.startswith("https://"):
        line += f" · [{wording.SPOTIFY}]({item.spotify_url})"
    return line


async def render(service: MoodLifter, reply: Reply) -> dict[str, Any]:
    """Keyword arguments for ``send`` (channel, followup or response) that show ``reply``;
    a /history longer than one embed shows its first page (see :func:`send_followup`)."""
    if isinstance(reply, TrackCard):
        # Remote album art is linked (Discord fetches it); otherwise the core's picture.
        return card_message(reply, None if reply.art_url else await service.card_image(reply))
    if isinstance(reply, History):
        return {"embed": history_embeds(reply)[0]}
    if isinstance(reply, EmotionSummary):
        out = {"embed": summary_embed(reply)}
        if reply.chart_png:
            out["file"] = _file(reply.chart_png, CHART_FILENAME)
        return out
    return {"content": notice_text(reply)}


async def send_followup(
    interaction: discord.Interaction, reply: Reply, *, personal: bool = False
) -> None:
    """Answer a deferred interaction with ``reply`` (a long /history: one message per page)."""
    bot = _bot(interaction)
    ephemeral = bot.ephemeral_for(interaction, personal=personal)
    if isinstance(reply, History):
        for embed in history_embeds(reply):
            await interaction.followup.send(embed=embed, ephemeral=ephemeral)
        return
    kwargs = _allowed_here(interaction, await render(bot.service, reply))
    try:
        await interaction.followup.send(**kwargs, ephemeral=ephemeral)
    except discord.HTTPException:
        if isinstance(reply, TrackCard):  # a song never shown is not used up
            await bot.service.undelivered(user_ref(interaction.user), reply)
        raise


async def send_response(
    interaction: discord.Interaction, reply: Reply, *, personal: bool = False
) -> None:
    """Answer a not-yet-acknowledged interaction with ``reply`` (quick replies only)."""
    bot = _bot(interaction)
    kwargs = _allowed_here(interaction, await render(bot.service, reply))
    ephemeral = bot.ephemeral_for(interaction, personal=personal)
    await interaction.response.send_message(**kwargs, ephemeral=ephemeral)


def _allowed_here(interaction: discord.Interaction, kwargs: dict[str, Any]) -> dict[str, Any]:
    """:func:`_allowed` for an interaction's channel."""
    permissions = None if interaction.guild_id is None else interaction.app_permissions
    return _allowed(permissions, kwargs)


def _allowed(permissions: discord.Permissions | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` without its file where the bot may not attach files in this server channel
    (``permissions``: the bot's there; None in a DM): the card or /mood comes without its
    drawn picture or chart rather than not at all."""
    if permissions is None or permissions.attach_files:
        return kwargs
    if kwargs.pop("file", None) is not None:
        embed = kwargs.get("embed")
        if embed is not None and (embed.image.url or "").startswith("attachment://"):
            embed.set_image(url=None)
    return kwargs


def card_message(card: TrackCard, picture: Picture | None) -> dict[str, Any]:
    """A song's embed and buttons, its album art linked or ``picture`` attached."""
    embed = card_embed(card)
    view = CardView(card.spotify_url, card.track_id)
    # Sent as components only: the one persistent CardView registered in setup_hook answers
    # every click, so no per-message view piles up in the client's view store.
    view.stop()
    out: dict[str, Any] = {"embed": embed, "view": view}
    if card.art_url:
        embed.set_thumbnail(url=card.art_url)
    elif picture is not None:
        filename = f"card.{picture.suffix}"  # Discord shows an attachment by its name's suffix
        embed.set_image(url=f"attachment://{filename}")
        out["file"] = _file(picture.data, filename)
    return out


def _file(data: bytes, filename: str) -> discord.File:
    return discord.File(io.BytesIO(data), filename=filename)
