"""Soak: minutes of mixed traffic against ``moodlift run telegram``; nothing lost, memory flat.

    python -m bench.soak [--minutes 10] [--users 12] [--json PATH]

The bot runs as in production (``python -m bot.cli run telegram``, its own process, a SQLite
file and a private TMPDIR in a temporary folder) and polls the local fake Bot API served by this
process on 127.0.0.1; Spotify is pointed at a closed local port (every card is drawn). Simulated
users act at random (seeded) with a pause between actions: selfies, ``/more``, ``/mood``,
``/mode``, the "Another song" button, files that are not photos or are broken, and floods
(several selfies at once, which meet the per-user rate limit). The run is bounded by
``--minutes`` and by ``--max-updates``.

Every update must get exactly one reply (matched by ``reply_parameters``, as in
:mod:`bench.throughput`, whose plumbing this reuses). The bot's resident memory (``VmRSS``) is
sampled every few seconds; memory is called flat when the last minute's median is within 10 %
of the first minute's. At the end the bot gets SIGTERM and must exit 0; the database must pass
``PRAGMA integrity_check`` and hold one delivery per card sent; the bot's data and temp
folders must hold no image file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, RESULTS_DIR, machine, selfie_jpeg, summary, table, write_json
from bench.serving import telegram_bot_env
from bench.throughput import Ledger, Sent, _Recorded, _stop

PHOTOS_PER_MINUTE = 20  # low enough that a flood meets it, high enough for normal use
# Above any simulated user's pace: the ledger expects one reply per update, and the flood gate
# (limits.actions_per_minute) drops updates unanswered by design.
ACTIONS_PER_MINUTE = 1_000
SAMPLE_EVERY = 5.0  # seconds between memory samples
REPLY_WAIT = 60.0  # seconds an update may take before it counts as lost
FLAT = 1.10  # last minute's median RSS may be at most this times the first minute's
# (action, weight): what a simulated user does next.
ACTIONS = (
    ("selfie", 30),
    ("more", 20),
    ("button", 10),
    ("mood", 8),
    ("mode", 4),
    ("bad_file", 12),
    ("not_a_photo", 6),
    ("chatter", 5),
    ("flood", 5),
)
FLOOD = 6  # selfies sent at once in a flood


def bad_files() -> list[tuple[str, str, bytes]]:
    """(file name, MIME type, bytes) of files a selfie-bot meets: broken, empty, wrong kind."""
    jpeg = selfie_jpeg(640)
    return [
        ("empty.jpg", "image/jpeg", b""),
        ("notes.jpg", "image/jpeg", b"just some text, renamed"),
        ("cut.jpg", "image/jpeg", jpeg[: len(jpeg) // 3]),
        ("IMG_1.HEIC", "image/heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64),
        ("tiny.png", "image/png", _tiny_png()),
    ]


def _tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    return buffer.getvalue()


def rss_kib(pid: int) -> int | None:
    """The process's resident set size in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Soak:
    """The simulated users and what they saw."""

    def __init__(self, fake: Any, args: argparse.Namespace, selfie_sizes: Any) -> None:
        self.fake = fake
        self.args = args
        self.sizes = selfie_sizes
        self.ledger = Ledger()
        self.fake.calls = _Recorded(self.ledger)
        self.deadline = time.monotonic() + args.minutes * 60
        self.updates = 0
        self.actions: Counter[str] = Counter()
        self.callbacks: list[str] = []
        self.bad = bad_files()

    def _room(self, n: int = 1) -> bool:
        return time.monotonic() < self.deadline and self.updates + n <= self.args.max_updates

    def _track(self, kind: str, who: Any, message: Any) -> Sent:
        self.updates += 1
        return self.ledger.add(Sent(kind, who["id"], message["message_id"], time.monotonic()))

    async def _await(self, sent: Sent) -> None:
        with contextlib.suppress(TimeoutError):  # no reply in time: counted as lost
            await asyncio.wait_for(sent.answered.wait(), REPLY_WAIT)

    async def user(self, index: int) -> None:
        """One user: act, wait for the answer, pause, until time or the update budget is up."""
        from tests.fakes.telegram_api import user

        rng = random.Random(self.args.seed * 1000 + index)
        who = user(800_000 + index, f"Soak{index}")
        names, weights = zip(*ACTIONS, strict=True)
        last_card: Any = None
        while self._room(FLOOD):
            action = rng.choices(names, weights)[0]
            if action == "button" and last_card is None:
                action = "selfie"  # nothing to press yet
            self.actions[action] += 1
            fake = self.fake
            if action == "flood":
                floods = [
                    self._track("flood", who, fake.send_photo(who, b"", sizes=self.sizes))
                    for _ in range(FLOOD)
                ]
                await asyncio.gather(*(self._await(s) for s in floods))
            elif action == "button":
                message = fake.sent_message(last_card)
                self.callbacks.append(fake.press_button(who, message, "more"))
                self.updates += 1
                # The new card replies to the card pressed; key it by that message.
                sent = self.ledger.add(
                    Sent("button", who["id"], message["message_id"], time.monotonic())
                )
                last_card = None  # each card is pressed at most once
                await self._await(sent)
                last_card = _card_of(sent) or last_card
            else:
                sent = self._track(action, who, self._send(action, who, rng))
                await self._await(sent)
                last_card = _card_of(sent) or last_card
            await asyncio.sleep(rng.uniform(*self.args.think))

    def _send(self, action: str, who: Any, rng: random.Random) -> Any:
        fake = self.fake
        if action == "selfie":
            return fake.send_photo(who, b"", sizes=self.sizes)
        if action in ("more", "mood"):
            return fake.send_command(who, f"/{action}")
        if action == "mode":
            return fake.send_command(who, f"/mode {rng.choice(['lift', 'match', 'banana'])}")
        if action == "bad_file":
            name, mime, data = rng.choice(self.bad)
            return fake.send_document(who, data, mime_type=mime, file_name=name)
        if action == "not_a_photo":
            return rng.choice([fake.send_sticker, fake.send_voice, fake.send_video])(who)
        return fake.send_text(who, rng.choice(["hi", "مرحبا 👋", "what is this?", "/dance"]))


def _card_of(sent: Sent) -> Any:
    """The card among the replies to ``sent`` (for the next button press), if any."""
    for reply in sent.replies:
        if reply.method == "sendPhoto" and "_message_id" in reply.params and reply.buttons:
            return reply
    return None


async def _sample_memory(pid: int, started: float, samples: list[tuple[float, int]]) -> None:
    while True:
        kib = rss_kib(pid)
        if kib is None:
            return
        samples.append((time.monotonic() - started, kib))
        await asyncio.sleep(SAMPLE_EVERY)


def memory_report(samples: list[tuple[float, int]], minutes: float) -> dict[str, Any]:
    """Median RSS per minute of the run, and the first minute against the last."""
    by_minute: dict[int, list[int]] = {}
    for at, kib in samples:
        by_minute.setdefault(int(at // 60), []).append(kib)
    medians = {m: round(statistics.median(v) / 1024, 1) for m, v in sorted(by_minute.items())}
    full = [m for m in medians if m < int(minutes)]  # whole minutes only
    first, last = (medians[full[0]], medians[full[-1]]) if full else (None, None)
    second_half = [(at / 60, kib / 1024) for at, kib in samples if at >= minutes * 30]
    slope = (
        statistics.linear_regression(*zip(*second_half, strict=True)).slope
        if len(second_half) >= 2
        else None
    )
    return {
        "rss_mb_median_by_minute": medians,
        "second_half_slope_mb_per_min": round(slope, 2) if slope is not None else None,
        "first_minute_mb": first,
        "last_minute_mb": last,
        "peak_mb": round(max(k for _, k in samples) / 1024, 1) if samples else None,
        "flat": bool(first and last and last <= first * FLAT),
        "samples": len(samples),
        "rss_mb_samples": [(round(at, 1), round(kib / 1024, 1)) for at, kib in samples],
    }


def image_files(*folders: Path) -> list[str]:
    """Files under ``folders`` that start like a JPEG, PNG, GIF or WebP."""
    signatures = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF")
    found = []
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else ():
            if path.is_file():
                with path.open("rb") as handle:
                    if handle.read(4).startswith(signatures):
                        found.append(str(path))
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakes.telegram_api import FakeTelegramAPI

    with tempfile.TemporaryDirectory(prefix="moodlift-soak-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "tmp").mkdir()
        log_path = tmp / "moodlift.log"
        async with FakeTelegramAPI() as fake:
            env = telegram_bot_env(
                tmp,
                fake,
                MOODLIFT_LIMITS_PHOTOS_PER_MINUTE=str(PHOTOS_PER_MINUTE),
                MOODLIFT_LIMITS_ACTIONS_PER_MINUTE=str(ACTIONS_PER_MINUTE),
                TMPDIR=str(tmp / "tmp"),
            )
            with log_path.open("wb") as log:
                bot = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot.cli", "run", "telegram",
                    env=env, cwd=REPO_ROOT, stdout=log, stderr=log,
                )  # fmt: skip
                samples: list[tuple[float, int]] = []
                try:
                    await fake.wait_for("getUpdates", within=180.0)
                    soak = Soak(fake, args, fake.photo_sizes(selfie_jpeg(1280)))
                    started = time.monotonic()
                    sampler = asyncio.create_task(_sample_memory(bot.pid, started, samples))
                    await asyncio.gather(*(soak.user(i) for i in range(args.users)))
                    wall = time.monotonic() - started
                    await asyncio.sleep(2.0)  # a late duplicate would show up now
                    sampler.cancel()
                finally:
                    await _stop(bot)
            text = log_path.read_text(errors="replace")
        database = tmp / "bench.sqlite3"
        report = _report(soak, wall, samples, args)
        report["exit_code"] = bot.returncode
        report["tracebacks_in_log"] = text.count("Traceback")
        report["log_errors"] = sum(1 for line in text.splitlines() if " ERROR " in line)
        report["log_tail"] = text[-2000:] if report["tracebacks_in_log"] else ""
        with sqlite3.connect(database) as db:
            report["integrity_check"] = db.execute("PRAGMA integrity_check").fetchone()[0]
            report["deliveries_in_db"] = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        report["image_files_left"] = image_files(tmp / "data", tmp / "cache", tmp / "tmp")
    return report


def _report(
    soak: Soak, wall: float, samples: list[tuple[float, int]], args: argparse.Namespace
) -> dict[str, Any]:
    sent = list(soak.ledger.sent.values())
    answered = [s for s in sent if s.replies]
    replies = Counter(
        "card" if s.replies[0].method == "sendPhoto" and s.replies[0].buttons else "notice"
        for s in answered
    )
    times = [s.reply_ms for s in sent if s.reply_ms is not None]
    cards = sum(
        1
        for s in answered
        for r in s.replies
        if r.method == "sendPhoto" and r.buttons and "_message_id" in r.params
    )
    return {
        "wall_s": round(wall, 1),
        "updates": len(sent),
        "updates_per_s": round(len(sent) / wall, 2),
        "lost": sum(1 for s in sent if not s.replies),
        "duplicated": sum(1 for s in sent if len(s.replies) > 1),
        "unmatched_replies": len(soak.ledger.unmatched),
        "callbacks_pressed": len(soak.callbacks),
        "callbacks_unanswered": sum(
            1 for q in soak.callbacks if q not in soak.fake.answered_callbacks
        ),
        "by_kind": dict(Counter(s.kind for s in sent)),
        "replies": dict(replies),
        "cards_sent": cards,
        "reply": summary(times),
        "memory": memory_report(samples, wall / 60),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--max-updates", type=int, default=20_000, help="stop after this many")
    parser.add_argument(
        "--think", type=float, nargs=2, default=(0.5, 3.0), help="pause range between actions, s"
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "soak.json")
    args = parser.parse_args(argv)
    env = machine()
    report = asyncio.run(run(args))
    memory = report["memory"]
    print(
        table(
            ["updates", "per s", "lost", "dup", "p50 ms", "p99 ms", "RSS 1st min MB",
             "last min MB", "peak MB", "exit"],
            [[
                report["updates"], report["updates_per_s"], report["lost"], report["duplicated"],
                report["reply"]["median_ms"], report["reply"]["p99_ms"],
                memory["first_minute_mb"], memory["last_minute_mb"], memory["peak_mb"],
                report["exit_code"],
            ]],
        )
    )  # fmt: skip
    print(f"\nupdates by kind: {report['by_kind']}; replies: {report['replies']}")
    print(
        f"RSS MB by minute: {memory['rss_mb_median_by_minute']}; second half: "
        f"{memory['second_half_slope_mb_per_min']} MB/min"
    )
    print(
        f"database: integrity {report['integrity_check']}, {report['deliveries_in_db']} "
        f"deliveries for {report['cards_sent']} cards; image files left: "
        f"{len(report['image_files_left'])}; tracebacks in the log: {report['tracebacks_in_log']}"
    )
    verdict = {
        "zero_lost": report["lost"] == 0 and report["callbacks_unanswered"] == 0,
        "zero_duplicated": report["duplicated"] == 0 and report["unmatched_replies"] == 0,
        "memory_flat": memory["flat"],
        "clean_exit": report["exit_code"] == 0 and report["tracebacks_in_log"] == 0,
        "database_ok": report["integrity_check"] == "ok"
        and report["deliveries_in_db"] == report["cards_sent"],
        "no_image_files": not report["image_files_left"],
    }
    print(f"verdict: {verdict}")
    write_json(
        args.json,
        "soak",
        {
            "what": "moodlift run telegram (subprocess) against the local fake Bot API, mixed traffic",
            "minutes": args.minutes,
            "users": args.users,
            "think_s": list(args.think),
            "seed": args.seed,
            "actions": dict(ACTIONS),
            "config": {"limits.photos_per_minute": PHOTOS_PER_MINUTE, "flood_size": FLOOD},
            "spotify": "offline (127.0.0.1:9): every card is the drawn one",
            "verdict": verdict,
            **report,
        },
        env,
    )
    return 0 if all(verdict.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
