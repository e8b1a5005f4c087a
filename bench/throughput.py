"""Throughput: 50 users sending selfies and /more through Telegram, end to end, on 127.0.0.1.

    python -m bench.throughput [--quick] [--json PATH]

The bot runs as in production, ``moodlift run telegram`` in its own process (``--in-process``
runs the Application in this one instead, for profiling): the real python-telegram-bot
Application polls the local fake Bot API (``tests/fakes/telegram_api.py``, served by this
process with the simulated users), downloads each photo over HTTP and answers through the real
core (SQLite store, shared catalog, Spotify offline so every card is drawn). Two phases:

* **sustained**: every user sends a selfie every ``users / rate`` seconds (``--rate`` selfies/s
  in all, spread evenly), then ``/more`` as soon as the card arrives; reply times are measured
  from the moment the update is queued to the moment the bot's reply reaches the server.
* **saturation**: every user sends selfies back to back (the next as soon as the card
  arrives): the most selfies/s the bot sustains.

Every update must get exactly one reply (matched by ``reply_parameters``). The per-user rate
limit (``limits.photos_per_minute``, 6 in production) is raised for the simulated users; all
other limits keep their defaults. The baseline, measured in the same process before and after
the phases, is the bare pipeline's capacity: ``workers`` x 1000 / median ``PhotoReader.read``
ms on the same selfie. The fake server and the simulated users share the bot's event loop and
CPU, so the figures are pessimistic. Targets (issue 8): >= 25 selfies/s, p99 <= 1 s, 0 lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    RESULTS_DIR,
    machine,
    selfie_jpeg,
    summary,
    table,
    time_ms,
    write_json,
)
from bench.serving import PHOTOS_PER_MINUTE, bench_settings, open_service, telegram_bot_env

TARGET_RATE = 25.0
TARGET_P99_MS = 1000.0
SENDS = ("sendMessage", "sendPhoto", "sendDocument")


@dataclass
class Sent:
    """One update a simulated user sent, and what came back."""

    kind: str  # "selfie" | "more"
    chat_id: int
    message_id: int
    at: float
    replies: list[Any] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def reply_ms(self) -> float | None:
        return (self.replies[0].at - self.at) * 1000 if self.replies else None


class Ledger:
    """Every update sent, matched to the bot's replies as they reach the fake server."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, int], Sent] = {}
        self.unmatched: list[Any] = []

    def add(self, sent: Sent) -> Sent:
        self.sent[(sent.chat_id, sent.message_id)] = sent
        return sent

    def on_call(self, call: Any) -> None:
        if call.method not in SENDS:
            return
        found = self.sent.get((call.chat_id, call.reply_to)) if call.reply_to else None
        if found is None:
            self.unmatched.append(call)
            return
        found.replies.append(call)
        found.answered.set()


class _Recorded(list):  # type: ignore[type-arg]
    """The fake's call list, telling the ledger about every call as it is recorded."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self._ledger = ledger

    def append(self, call: Any) -> None:
        super().append(call)
        self._ledger.on_call(call)


async def _exchange(fake: Any, ledger: Ledger, who: Any, sizes: Any, wait_s: float) -> None:
    """A selfie, its card, then /more and its card (gives up waiting after ``wait_s``)."""
    message = fake.send_photo(who, b"", sizes=sizes)
    sent = ledger.add(Sent("selfie", who["id"], message["message_id"], time.monotonic()))
    await _wait(sent, wait_s)
    message = fake.send_command(who, "/more")
    sent = ledger.add(Sent("more", who["id"], message["message_id"], time.monotonic()))
    await _wait(sent, wait_s)


async def _wait(sent: Sent, wait_s: float) -> None:
    with contextlib.suppress(TimeoutError):  # no reply in time: counted as lost
        await asyncio.wait_for(sent.answered.wait(), wait_s)


async def _sustained(
    fake: Any, ledger: Ledger, users: list[Any], sizes: Any, rate: float, rounds: int
) -> float:
    """Selfies spread evenly at ``rate``/s over all users; returns the wall time."""
    period = len(users) / rate  # each user's interval between selfies
    start = time.monotonic()

    async def one_user(i: int, who: Any) -> None:
        for j in range(rounds):
            due = start + (j + i / len(users)) * period
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await _exchange(fake, ledger, who, sizes, wait_s=30.0)

    await asyncio.gather(*(one_user(i, who) for i, who in enumerate(users)))
    return time.monotonic() - start


async def _saturation(
    fake: Any, ledger: Ledger, users: list[Any], sizes: Any, rounds: int
) -> float:
    """Every user back to back; returns the wall time."""
    start = time.monotonic()

    async def one_user(who: Any) -> None:
        for _ in range(rounds):
            await _exchange(fake, ledger, who, sizes, wait_s=60.0)

    await asyncio.gather(*(one_user(who) for who in users))
    return time.monotonic() - start


def _phase_report(name: str, ledger: Ledger, wall_s: float) -> dict[str, Any]:
    sent = list(ledger.sent.values())
    selfies = [s for s in sent if s.kind == "selfie"]
    answered = [s for s in sent if s.replies]
    kinds = Counter(
        "card" if s.replies[0].method == "sendPhoto" else s.replies[0].text[:40] for s in answered
    )
    report: dict[str, Any] = {
        "phase": name,
        "wall_s": round(wall_s, 2),
        "updates": len(sent),
        "selfies": len(selfies),
        "selfies_per_s": round(sum(1 for s in selfies if s.replies) / wall_s, 2),
        "lost": sum(1 for s in sent if not s.replies),
        "duplicated": sum(1 for s in sent if len(s.replies) > 1),
        "unmatched_replies": len(ledger.unmatched),
        "replies_by_kind": dict(kinds),
    }
    for kind in ("selfie", "more"):
        times = [s.reply_ms for s in sent if s.kind == kind and s.reply_ms is not None]
        if times:
            report[f"{kind}_reply"] = summary(times)
    return report


def _capacity(reader: Any, jpeg: bytes, workers: int, n: int) -> dict[str, float]:
    reader.read(jpeg)
    times = [time_ms(lambda: reader.read(jpeg))[0] for _ in range(n)]
    median = statistics.median(times)
    return {"read_median_ms": round(median, 2), "selfies_per_s": round(workers * 1000 / median, 2)}


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process ``pid``; this process when None."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def _phases(
    fake: Any, args: argparse.Namespace, jpeg: bytes, capacity: Any, bot_pid: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, float]]]:
    """Both phases against a bot that is polling ``fake``, capacity measured around them.

    With the bot in its own process (``bot_pid``), each phase also records the CPU time the
    bot used and the CPU time this process (the fake Bot API and the simulated users) used."""
    from tests.fakes.telegram_api import user

    sizes = fake.photo_sizes(jpeg)  # one upload, reused by every user
    users = [user(700_000 + i, f"User{i}") for i in range(args.users)]
    capacities = [await asyncio.to_thread(capacity)]
    phases = []
    for name in ("sustained", "saturation"):
        ledger = Ledger()
        fake.calls = _Recorded(ledger)
        cpu = (_cpu_s(bot_pid), _cpu_s()) if bot_pid is not None else None
        if name == "sustained":
            wall = await _sustained(fake, ledger, users, sizes, args.rate, args.rounds)
        else:
            wall = await _saturation(fake, ledger, users, sizes, args.rounds)
        report = _phase_report(name, ledger, wall)
        if cpu is not None:
            report["cpu"] = _cpu_report(report, _cpu_s(bot_pid) - cpu[0], _cpu_s() - cpu[1])
        await asyncio.sleep(1.0)  # a late duplicate would show up now
        phases.append(report)
        capacities.append(await asyncio.to_thread(capacity))
    return phases, capacities


def _cpu_report(phase: dict[str, Any], bot_s: float, fake_s: float) -> dict[str, float]:
    """Who used the CPU during a phase: the bot, and the fake Bot API with the users.

    The real Bot API runs on Telegram's machines; here the fake shares the bot's two cores.
    The bot's CPU per answered selfie (with its /more) is what the bot itself costs."""
    answered = phase["selfies_per_s"] * phase["wall_s"]
    return {
        "bot_s": round(bot_s, 2),
        "fake_and_users_s": round(fake_s, 2),
        "fake_and_users_share": round(fake_s / max(bot_s + fake_s, 1e-9), 3),
        "bot_ms_per_selfie_and_more": round(bot_s * 1000 / max(answered, 1), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.telegram import build_application, polling
    from core.config import Secret, TelegramSettings
    from core.reading import PhotoReader
    from tests.fakes.telegram_api import FakeTelegramAPI

    jpeg = selfie_jpeg(1280)
    with tempfile.TemporaryDirectory(prefix="moodlift-bench-") as tmp_name:
        tmp = Path(tmp_name)
        settings = bench_settings(tmp)
        workers = settings.limits.workers
        async with FakeTelegramAPI() as fake:
            if args.in_process:
                service = await open_service(settings)
                reader = service.reader
                try:
                    telegram = TelegramSettings(
                        token=Secret(fake.token),
                        api_url=fake.base_url,
                        file_url=fake.base_file_url,
                    )
                    application = build_application(
                        service, telegram, max_image_bytes=settings.limits.max_image_bytes
                    )
                    async with polling(application, poll_timeout=1):
                        phases, capacity = await _phases(
                            fake, args, jpeg, lambda: _capacity(reader, jpeg, workers, 10)
                        )
                finally:
                    await service.close()
            else:
                reader = PhotoReader.from_settings(settings)  # for the baseline only
                log_path = tmp / "moodlift.log"
                env = telegram_bot_env(
                    tmp,
                    fake,
                )
                profiler = (
                    ["-m", "pyinstrument", "-r", "text", "-o", str(args.profile.resolve())]
                    if args.profile
                    else []
                )
                with log_path.open("wb") as log:
                    bot = await asyncio.create_subprocess_exec(
                        sys.executable, *profiler, "-m", "bot.cli", "run", "telegram",
                        env=env, cwd=REPO_ROOT, stdout=log, stderr=log,
                    )  # fmt: skip
                    try:
                        await fake.wait_for("getUpdates", within=120.0)
                        phases, capacity = await _phases(
                            fake,
                            args,
                            jpeg,
                            lambda: _capacity(reader, jpeg, workers, 10),
                            bot_pid=None if args.profile else bot.pid,
                        )
                    finally:
                        await _stop(bot)
                text = log_path.read_text(errors="replace")
                if bot.returncode not in (0, -signal.SIGTERM) or "Traceback" in text:
                    print(f"the bot logged errors (exit {bot.returncode}); the end of its log:")
                    print(text[-4000:])
    return {"phases": phases, "capacity": capacity, "workers": workers}


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the bot finishes work in flight), then SIGKILL if it hangs."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 selfies per user: a smoke run")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="offered selfies/s")
    parser.add_argument("--rounds", type=int, help="selfies per user and phase (default 6)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the bot in this process (shares the fake's event loop; for profiling)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the bot under pyinstrument; its text report goes here"
    )
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "throughput.json")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 6)
    env = machine()
    result = asyncio.run(run(args))
    phases, capacity = result["phases"], result["capacity"]
    baseline = statistics.median(c["selfies_per_s"] for c in capacity)

    rows = []
    for p in phases:
        selfie, more = p.get("selfie_reply", {}), p.get("more_reply", {})
        rows.append(
            [
                p["phase"], p["updates"], p["selfies_per_s"],
                selfie.get("median_ms"), selfie.get("p99_ms"),
                more.get("median_ms"), more.get("p99_ms"),
                p["lost"], p["duplicated"], round(p["selfies_per_s"] / baseline, 2),
            ]
        )  # fmt: skip
    print(
        table(
            ["phase", "updates", "selfies/s", "selfie p50 ms", "p99", "/more p50 ms", "p99",
             "lost", "dup", "x capacity"],
            rows,
        )
    )  # fmt: skip
    print(
        f"\nbaseline: bare pipeline capacity {baseline:.1f} selfies/s ({result['workers']} "
        f"workers, read {[c['read_median_ms'] for c in capacity]} ms before/between/after)"
    )
    for p in phases:
        print(f"{p['phase']}: replies {p['replies_by_kind']}")
        if "cpu" in p:
            cpu = p["cpu"]
            print(
                f"  CPU: bot {cpu['bot_s']} s ({cpu['bot_ms_per_selfie_and_more']} ms per selfie "
                f"with its /more), fake Bot API + users {cpu['fake_and_users_s']} s "
                f"({cpu['fake_and_users_share']:.0%} of the CPU both used)"
            )
    sustained = phases[0]
    saturation = phases[1]
    verdict = {
        "offered_rate": args.rate,
        "sustained_selfies_per_s": sustained["selfies_per_s"],
        "max_selfies_per_s": saturation["selfies_per_s"],
        "meets_rate_target": saturation["selfies_per_s"] >= TARGET_RATE,
        "sustained_selfie_p99_ms": sustained.get("selfie_reply", {}).get("p99_ms"),
        "meets_p99_target": sustained.get("selfie_reply", {}).get("p99_ms", 1e9) <= TARGET_P99_MS,
        "lost": sum(p["lost"] for p in phases),
        "duplicated": sum(p["duplicated"] for p in phases),
        "non_card_replies": sum(
            n for p in phases for kind, n in p["replies_by_kind"].items() if kind != "card"
        ),
        "every_update_one_reply": all(
            p["lost"] == 0 and p["duplicated"] == 0 and p["unmatched_replies"] == 0 for p in phases
        ),
    }
    print(
        f"\nmax {verdict['max_selfies_per_s']:.1f} selfies/s (target >= {TARGET_RATE:g}); "
        f"at {args.rate:g}/s offered, selfie p99 {verdict['sustained_selfie_p99_ms']} ms "
        f"(target <= {TARGET_P99_MS:g}); lost {verdict['lost']}, duplicated "
        f"{verdict['duplicated']}, answered with a notice instead of a card "
        f"{verdict['non_card_replies']}"
    )
    write_json(
        args.json,
        "throughput",
        {
            "what": "Telegram path end to end: PTB Application polling the local fake Bot API",
            "bot": "in this process"
            if args.in_process
            else "subprocess: python -m bot.cli run telegram",
            "spotify": "offline (127.0.0.1:9): every card is the drawn one, cached per song",
            "users": args.users,
            "selfies_per_user_and_phase": args.rounds,
            "photo": "selfie 1280 px JPEG (Telegram sizes 90..1280 registered once)",
            "config": {
                "limits.photos_per_minute": PHOTOS_PER_MINUTE,
                "note": "raised for the benchmark (production default 6); other limits default",
                "limits.workers": result["workers"],
            },
            "baseline": "bare PhotoReader.read capacity (workers x 1000 / median ms), same process",
            "baseline_selfies_per_s": baseline,
            "verdict": verdict,
            "phases": phases,
            "capacity": capacity,
        },
        env,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
