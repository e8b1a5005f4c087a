"""Offline evaluation of personal taste: simulated users rate what they are served.

No chat platform is involved. The served catalog is built exactly as ``moodlift run`` builds it
(both CSVs from the shared data imported into a fresh SQLite store, unlabelled songs given the
song-mood model's mood, doubtful ones held back); then every simulated user

* sticks to one mood (their selfies keep reading the same way), and
* has a hidden taste: a disc in (valence, energy) around one song of that mood, wide enough to
  hold a quarter of the mood's songs. They like a song inside it with probability 0.9 and one
  outside with probability 0.1 (people are not consistent); a song's answer is fixed per user,
  so both arms meet the same person.

Each user is served ``--ratings`` songs twice, from the same random stream: once by the served
policy (:class:`core.taste.TastePolicy`, which sees only the ratings) and once by the
unpersonalised pick (any unheard song of the mood at random — what the bot does without
ratings). Every served song is rated. The like-rate per step, over all users, is the figure.

    python -m bench.taste_sim                     # 400 users x 20 ratings, seed 2026
    python -m bench.taste_sim --axes danceability,acousticness   # a taste in other features
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from bench.common import RESULTS_DIR, machine, summary, table, write_json
from core.catalog import ensure_catalog
from core.config import CatalogSettings, DatabaseSettings, load_settings
from core.moods import MOODS
from core.store import Store
from core.store.schema import Track
from core.store.store import servable
from core.taste import TASTE_FEATURES, TastePolicy
from data.catalog_sources import SourceSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MUSIC = (
    Path(os.environ.get("MOODLIFT_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data") / "music"
)
FIGURE = REPO_ROOT / "docs" / "taste-sim.png"
LIKED_SHARE = 0.25  # the share of a mood's songs inside a user's hidden region
LIKE_INSIDE, LIKE_OUTSIDE = 0.9, 0.1


@dataclass(frozen=True)
class Catalog:
    """Servable songs of one mood: the policy's features and every audio column by name."""

    features: np.ndarray  # (songs, len(TASTE_FEATURES))
    columns: dict[str, np.ndarray]


async def load_catalog(
    music_dir: Path, axes: tuple[str, ...], latency_rounds: int = 0
) -> tuple[dict[str, Catalog], dict[str, Any]]:
    """Build the served catalog in a throw-away store and read each mood's servable songs;
    with ``latency_rounds``, also time the store's pick there (see :func:`pick_latency`)."""
    wanted = tuple(dict.fromkeys((*TASTE_FEATURES, *axes)))
    with tempfile.TemporaryDirectory() as tmp:
        defaults = load_settings(env={})
        settings = replace(
            defaults,
            database=DatabaseSettings(url=f"sqlite+aiosqlite:///{Path(tmp) / 'sim.sqlite3'}"),
            catalog=CatalogSettings(
                sources=(
                    SourceSpec(str(music_dir / "data_moods.csv")),
                    SourceSpec(str(music_dir / "dataset-of-10s.csv")),
                )
            ),
        )
        async with await Store.open(settings) as store:
            await ensure_catalog(settings, store)
            async with store.sessions() as session:
                columns = [getattr(Track, name) for name in wanted]
                rows = (
                    await session.execute(
                        select(Track.mood, *columns)
                        .where(servable(store.min_mood_confidence))
                        .order_by(Track.id)
                    )
                ).all()
            latency = await pick_latency(store, latency_rounds) if latency_rounds else {}
    catalogs = {}
    for mood in MOODS:
        values = np.array([row[1:] for row in rows if row[0] == mood], dtype=float)
        by_name = {name: values[:, i] for i, name in enumerate(wanted)}
        features = np.column_stack([by_name[name] for name in TASTE_FEATURES])
        catalogs[mood] = Catalog(features, by_name)
    return catalogs, latency


RATED_COUNTS = (0, 20, 200)  # 200 is TASTE_MEMORY: the most a pick ever weighs


async def pick_latency(store: Store, rounds: int, mood: str = "happy") -> dict[str, Any]:
    """What taste costs a pick: ``Store.pick_and_deliver`` on the real catalog's largest mood
    for users who heard 200 songs and rated 0, 20 or all of them, interleaved (ABC, CBA, ...)
    so load hits all alike."""
    users = {}
    for count in RATED_COUNTS:  # each heard the same number of songs and rated ``count``
        user = await store.get_or_create_user("bench", f"rated-{count}")
        for i in range(max(RATED_COUNTS)):
            pick = await store.pick_and_deliver(user.id, mood)
            if i < count:
                await store.rate(user.id, pick.track.id, 1 if i % 3 else -1)
        users[count] = user.id
    times: dict[int, list[float]] = {count: [] for count in users}
    for i in range(rounds):
        for count in RATED_COUNTS if i % 2 == 0 else reversed(RATED_COUNTS):
            start = time.perf_counter()
            await store.pick_and_deliver(users[count], mood)
            times[count].append((time.perf_counter() - start) * 1000)
    return {"mood": mood, **{f"{count} ratings": summary(t) for count, t in times.items()}}


@dataclass(frozen=True)
class User:
    """A simulated listener: their mood and, per song of it, whether they would like it."""

    mood: str
    likes: np.ndarray  # bool per song of the mood


def make_user(catalogs: dict[str, Catalog], axes: tuple[str, ...], seed: int, n: int) -> User:
    """A user with a hidden region of taste in ``axes`` (fixed by ``seed`` and ``n``)."""
    rng = np.random.default_rng([seed, n])
    mood = MOODS[int(rng.integers(len(MOODS)))]
    catalog = catalogs[mood]
    points = np.column_stack([catalog.columns[axis] for axis in axes])
    points = (points - points.min(axis=0)) / np.ptp(points, axis=0).clip(min=1e-9)
    centre = points[int(rng.integers(len(points)))]
    distance = np.linalg.norm(points - centre, axis=1)
    inside = distance <= np.quantile(distance, LIKED_SHARE)
    draw = rng.random(len(points))
    return User(mood, np.where(inside, draw < LIKE_INSIDE, draw < LIKE_OUTSIDE))


def session(
    user: User, catalog: Catalog, policy: TastePolicy | None, steps: int, seed: int, n: int
) -> list[bool]:
    """Serve ``steps`` unheard songs and return whether each was liked; ``policy`` None is the
    unpersonalised pick (the policy without ratings is the same uniform draw)."""
    rng = random.Random(f"{seed}:{n}")  # the same stream for both arms of one user
    unheard = list(range(len(catalog.features)))
    rated: list[np.ndarray] = []
    values: list[int] = []
    liked: list[bool] = []
    for _ in range(steps):
        candidates = catalog.features[unheard]
        if policy is None:
            index = rng.randrange(len(unheard))
        else:
            index = policy.choose(candidates, rated, values, rng)
        song = unheard.pop(index)
        like = bool(user.likes[song])
        rated.append(catalog.features[song])
        values.append(1 if like else -1)
        liked.append(like)
    return liked


def simulate(
    catalogs: dict[str, Catalog], axes: tuple[str, ...], users: int, steps: int, seed: int
) -> dict[str, Any]:
    """Like-rate per step for both arms over the same users, with 95 % intervals."""
    policy = TastePolicy()
    arms: dict[str, list[list[bool]]] = {"random": [], "personalised": []}
    for n in range(users):
        user = make_user(catalogs, axes, seed, n)
        catalog = catalogs[user.mood]
        arms["random"].append(session(user, catalog, None, steps, seed, n))
        arms["personalised"].append(session(user, catalog, policy, steps, seed, n))
    curves = {}
    for arm, runs in arms.items():
        rates = np.mean(np.array(runs, dtype=float), axis=0)
        half = [1.96 * math.sqrt(p * (1 - p) / users) for p in rates]
        curves[arm] = {"like_rate": rates.round(4).tolist(), "ci95": np.round(half, 4).tolist()}
    return curves


def window(rates: list[float], first: int, last: int) -> float:
    """Mean like-rate over ratings ``first``..``last`` (1-based, inclusive)."""
    return float(np.mean(rates[first - 1 : last]))


def figure(curves: dict[str, Any], path: Path, title: str) -> None:
    """Like-rate per step, both arms, with 95 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for arm, colour in (("random", "#888888"), ("personalised", "#d0562b")):
        rates = np.array(curves[arm]["like_rate"])
        half = np.array(curves[arm]["ci95"])
        steps = np.arange(1, len(rates) + 1)
        ax.plot(steps, rates, marker="o", markersize=3, color=colour, label=arm)
        ax.fill_between(steps, rates - half, rates + half, color=colour, alpha=0.2)
    ax.set_xlabel("song served (each one rated)")
    ax.set_ylabel("share of users who liked it")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(1, len(rates) + 1, max(1, len(rates) // 10)))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--ratings", type=int, default=20, help="songs served (and rated) each")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--axes", default="valence,energy", help="features of the hidden taste")
    parser.add_argument("--music", type=Path, default=SHARED_MUSIC, help="the catalog CSVs")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None, help=f"default {FIGURE}")
    parser.add_argument(
        "--latency-rounds", type=int, default=60, help="timed picks per user kind (0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="50 users x 10 ratings")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.ratings, args.latency_rounds = 50, 10, 5
    axes = tuple(axis.strip() for axis in args.axes.split(",") if axis.strip())
    env = machine()

    catalogs, latency = asyncio.run(load_catalog(args.music, axes, args.latency_rounds))
    sizes = {mood: len(c.features) for mood, c in catalogs.items()}
    print(f"served catalog: {sizes}")
    if latency:
        print(f"\nStore.pick_and_deliver, {latency['mood']} ({sizes[latency['mood']]} songs):")
        print(
            table(
                ("user", "median ms", "p90 ms"),
                [
                    (kind, stats["median_ms"], stats["p90_ms"])
                    for kind, stats in latency.items()
                    if kind != "mood"
                ],
            )
        )
    curves = simulate(catalogs, axes, args.users, args.ratings, args.seed)

    random_, personal = curves["random"]["like_rate"], curves["personalised"]["like_rate"]
    rows = [
        (step, f"{r:.2f}", f"{p:.2f}", f"{p - r:+.2f}")
        for step, (r, p) in enumerate(zip(random_, personal, strict=True), 1)
    ]
    print(f"\n{args.users} users, taste in {' x '.join(axes)}, seed {args.seed}")
    print(table(("rating", "random", "personalised", "difference"), rows))
    windows = {}
    for first, last in ((1, 5), (6, 10), (11, 20)):
        if last <= args.ratings:
            windows[f"{first}-{last}"] = {
                "random": round(window(random_, first, last), 4),
                "personalised": round(window(personal, first, last), 4),
            }
    print(
        table(("ratings", "random", "personalised"), [(k, *v.values()) for k, v in windows.items()])
    )

    default_name = "taste_sim" if axes == ("valence", "energy") else f"taste_sim_{'_'.join(axes)}"
    figure_path = args.figure or (FIGURE if default_name == "taste_sim" else None)
    if figure_path is not None and not args.quick:
        figure(
            curves,
            figure_path,
            f"{args.users} simulated users, taste in {' × '.join(axes)}: like-rate per rating",
        )
    policy = TastePolicy()
    write_json(
        args.json or RESULTS_DIR / f"{default_name}.json",
        "taste_sim",
        {
            "users": args.users,
            "ratings": args.ratings,
            "seed": args.seed,
            "taste_axes": list(axes),
            "liked_share_of_mood": LIKED_SHARE,
            "like_probability": {"inside": LIKE_INSIDE, "outside": LIKE_OUTSIDE},
            "policy": {
                "features": list(TASTE_FEATURES),
                "bandwidth": policy.bandwidth,
                "prior": policy.prior,
                "exploration": policy.exploration,
            },
            "catalog_songs_per_mood": sizes,
            "pick_latency": latency,
            "windows": windows,
            "per_step": curves,
        },
        env,
    )


if __name__ == "__main__":
    main()
