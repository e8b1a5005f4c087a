"""Footprint: peak memory and time to ready of ``moodlift run`` with Telegram and Discord.

    python -m bench.footprint [--quick] [--json PATH]

``moodlift run telegram discord`` starts as a subprocess against local fakes: the fake Bot API
(``tests/fakes/telegram_api.py``) and a minimal fake Discord (``bench/fake_discord.py``: REST
login, command sync, gateway HELLO/READY). discord.py has no setting for its endpoints, so the
subprocess sets ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` before calling
``bot.cli.main`` — three lines, nothing else differs. A plain ``moodlift run telegram`` (the
console entry point, unpatched) is measured too.

Each start is a restart, as after a deploy: the database already holds the schema and the
catalog (``moodlift catalog import`` ran first, untimed). Time to ready: from spawning the
process until Telegram is polling (its first ``getUpdates``)
and Discord has received READY on the gateway. Peak RSS: ``VmHWM`` of the process at ready, and
again after it has answered 10 selfies and 10 ``/more`` (the models and buffers in use).
Baseline, interleaved in the same run: ``python -c "import tensorflow"`` (wall time and peak
RSS), what serving with TensorFlow instead of LiteRT would cost before doing anything.
Targets (issue 8): <= 250 MB peak RSS, <= 2 s to ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, RESULTS_DIR, machine, selfie_jpeg, table, write_json
from bench.fake_discord import FakeDiscord
from bench.serving import telegram_bot_env

TARGET_RSS_MB = 250.0
TARGET_READY_S = 2.0
MB = 1024 * 1024

LAUNCHER = """
import sys
import discord.gateway, discord.http, yarl
discord.http.Route.BASE = sys.argv[1]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sys.argv[2])
from bot.cli import main
sys.exit(main(["run", "telegram", "discord"]))
"""


def _vm_hwm_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM) in MB, while it runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        return None
    return None


async def _moodlift(
    tmp: Path, both: bool, work: int, profile: Path | None = None
) -> dict[str, Any]:
    """Start ``moodlift run`` against the fakes; time to ready, peak RSS, then stop it."""
    from tests.fakes.telegram_api import FakeTelegramAPI, user

    db_dir = tmp / ("both" if both else "telegram")
    db_dir.mkdir()
    async with FakeTelegramAPI() as telegram, FakeDiscord() as discord_fake:
        env = telegram_bot_env(db_dir, telegram)
        if both:
            env["MOODLIFT_DISCORD_TOKEN"] = "fake.discord.token"
            command = [sys.executable, "-c", LAUNCHER, discord_fake.api_base, discord_fake.gateway]
            if profile is not None:  # pyinstrument runs the launcher as a script file
                launcher = db_dir / "launcher.py"
                launcher.write_text(LAUNCHER)
                command = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o",
                           str(profile), str(launcher), *command[3:]]  # fmt: skip
        else:
            entry = shutil.which("moodlift", path=str(Path(sys.executable).parent))
            command = [entry] if entry else [sys.executable, "-m", "bot.cli"]
            command += ["run", "telegram"]
        polling = asyncio.Event()  # set when the first getUpdates arrives (not when it returns)
        answer_updates = telegram._api_getUpdates

        async def get_updates(call: Any) -> Any:
            polling.set()
            return await answer_updates(call)

        telegram._api_getUpdates = get_updates  # type: ignore[method-assign]
        log_path = db_dir / "moodlift.log"
        with log_path.open("wb") as log:
            # A restart, as after a deploy: the schema and the catalog are already there.
            prepare = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "catalog", "import",
                env=env, cwd=REPO_ROOT, stdout=log, stderr=log,
            )  # fmt: skip
            if await prepare.wait() != 0:
                raise RuntimeError(f"moodlift catalog import failed: {log_path.read_text()}")
            start = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log
            )
            try:
                await asyncio.wait_for(polling.wait(), 120.0)
                telegram_ready = time.monotonic() - start
                discord_ready = None
                if both:
                    while discord_fake.ready_sent == 0:
                        if process.returncode is not None or time.monotonic() - start > 120:
                            break
                        await asyncio.sleep(0.005)
                    discord_ready = time.monotonic() - start if discord_fake.ready_sent else None
                ready_s = max(telegram_ready, discord_ready or 0.0)
                rss_ready = _vm_hwm_mb(process.pid)
                sizes = telegram.photo_sizes(selfie_jpeg(1280))
                for i in range(work):
                    who = user(800_000 + i, f"User{i}")
                    telegram.send_photo(who, b"", sizes=sizes)
                    telegram.send_command(who, "/more")
                await telegram.wait_for(
                    lambda c: c.method in ("sendPhoto", "sendMessage"), count=2 * work, within=300
                )
                rss_work = _vm_hwm_mb(process.pid)
            except BaseException:
                print(f"moodlift did not get ready; its log:\n{log_path.read_text()[-9000:]}")
                raise
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        text = log_path.read_text(errors="replace")
        if "Traceback" in text or process.returncode not in (0, -signal.SIGTERM):
            print(f"moodlift exited {process.returncode}; the end of its log:\n{text[-3000:]}")
        return {
            "ready_s": round(ready_s, 3),
            "telegram_polling_s": round(telegram_ready, 3),
            "discord_ready_s": round(discord_ready, 3) if discord_ready else None,
            "discord_commands_synced": len(discord_fake.synced_commands) if both else None,
            "peak_rss_at_ready_mb": round(rss_ready, 1) if rss_ready else None,
            "peak_rss_after_work_mb": round(rss_work, 1) if rss_work else None,
            "exit_code": process.returncode,
        }


async def _python_import(module: str) -> dict[str, Any]:
    """Wall time and peak RSS of ``python -c "import MODULE"``."""
    code = f"import {module}, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    start = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    out, _ = await process.communicate()
    wall = time.monotonic() - start
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(int(out.split()[-1]) * 1024 / MB, 1)}


async def run(
    rounds: int, work: int, profile: Path | None = None
) -> dict[str, list[dict[str, Any]]]:
    samples: dict[str, list[dict[str, Any]]] = {"both": [], "telegram": [], "tensorflow": []}
    with tempfile.TemporaryDirectory(prefix="moodlift-bench-") as tmp_name:
        for i in range(rounds):
            round_dir = Path(tmp_name) / f"round{i}"
            round_dir.mkdir()
            steps = ["both", "tensorflow", "telegram"]
            for step in steps if i % 2 == 0 else reversed(steps):
                if step == "tensorflow":
                    samples[step].append(await _python_import("tensorflow"))
                else:
                    both = step == "both"
                    sample = await _moodlift(round_dir, both, work, profile if both else None)
                    samples[step].append(sample)
    return samples


def _median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round: a smoke run")
    parser.add_argument("--rounds", type=int, help="starts of each kind (default 3)")
    parser.add_argument(
        "--profile", type=Path, help="start under pyinstrument; its text report goes here"
    )
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "footprint.json")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    work = 10
    env = machine()
    profile = args.profile.resolve() if args.profile else None
    samples = asyncio.run(run(rounds, work, profile))

    summary: dict[str, Any] = {}
    for name in ("both", "telegram"):
        summary[name] = {
            key: _median(samples[name], key)
            for key in ("ready_s", "telegram_polling_s", "discord_ready_s",
                        "peak_rss_at_ready_mb", "peak_rss_after_work_mb")
        }  # fmt: skip
    summary["tensorflow"] = {
        key: _median(samples["tensorflow"], key) for key in ("wall_s", "peak_rss_mb")
    }
    both, tf = summary["both"], summary["tensorflow"]
    rows = [
        ["moodlift run telegram discord", both["ready_s"], both["peak_rss_at_ready_mb"],
         both["peak_rss_after_work_mb"]],
        ["moodlift run telegram", summary["telegram"]["ready_s"],
         summary["telegram"]["peak_rss_at_ready_mb"], summary["telegram"]["peak_rss_after_work_mb"]],
        ['baseline: python -c "import tensorflow"', tf["wall_s"], tf["peak_rss_mb"], None],
    ]  # fmt: skip
    print(table(["process", "ready s", "peak RSS MB at ready", f"after {work} selfies"], rows))
    verdict = {
        "ready_s": both["ready_s"],
        "target_ready_s": TARGET_READY_S,
        "meets_ready_target": (both["ready_s"] or 1e9) <= TARGET_READY_S,
        "peak_rss_mb": both["peak_rss_after_work_mb"],
        "target_peak_rss_mb": TARGET_RSS_MB,
        "meets_rss_target": (both["peak_rss_after_work_mb"] or 1e9) <= TARGET_RSS_MB,
        "rss_vs_tensorflow_import": round(tf["peak_rss_mb"] / both["peak_rss_after_work_mb"], 2),
        "ready_vs_tensorflow_import": round(tf["wall_s"] / both["ready_s"], 2),
    }
    print(
        f"\nboth adapters: ready in {verdict['ready_s']} s (target <= {TARGET_READY_S:g}), "
        f"peak {verdict['peak_rss_mb']} MB (target <= {TARGET_RSS_MB:g}); importing TensorFlow "
        f"alone takes {verdict['ready_vs_tensorflow_import']}x the time and "
        f"{verdict['rss_vs_tensorflow_import']}x the memory"
    )
    write_json(
        args.json,
        "footprint",
        {
            "what": "moodlift run (subprocess) against the fake Bot API and a fake Discord",
            "discord": "bench/fake_discord.py; Route.BASE and DEFAULT_GATEWAY set by a launcher",
            "ready": "first getUpdates on the fake Bot API and READY sent on the fake gateway",
            "start": "a restart: schema and catalog already in the database (imported untimed)",
            "peak_rss": "VmHWM of the process (MB = 2**20 bytes)",
            "rounds": rounds,
            "order": "interleaved: both, tensorflow, telegram-only; reversed every other round",
            "baseline": 'python -c "import tensorflow"',
            "verdict": verdict,
            "summary": summary,
            "samples": samples,
        },
        env,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
