"""Build the real core service for a benchmark: a temporary SQLite file, the shared catalog.

The catalog CSV is read where it lives (``$MOODLIFT_SHARED_DATA`` or ``../shared/data``), never
copied. The per-user photo limit is raised for benchmarks (see ``PHOTOS_PER_MINUTE``): simulated
users send far faster than the production default of 6 a minute allows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import REPO_ROOT
from core.catalog import ensure_catalog
from core.config import (
    CatalogSettings,
    DatabaseSettings,
    LimitsSettings,
    PathsSettings,
    Settings,
    SpotifySettings,
    load_settings,
)
from core.service import MoodLifter
from data.catalog_sources import SourceSpec

if TYPE_CHECKING:
    from tests.fakes.telegram_api import FakeTelegramAPI

PHOTOS_PER_MINUTE = 100_000  # benchmark users are not rate limited (production default: 6)
# Nothing listens on port 9: art lookups fail at once and every card is the drawn one (cached
# per song), as in the tests; no benchmark ever reaches the real Spotify.
OFFLINE_SPOTIFY = {
    "api_url": "http://127.0.0.1:9/v1/",
    "token_url": "http://127.0.0.1:9/api/token",
    "oembed_url": "http://127.0.0.1:9/oembed",
}


def shared_music_csv() -> Path:
    """The labelled catalog (data_moods.csv) in the shared data folder."""
    configured = os.environ.get("MOODLIFT_SHARED_DATA")
    base = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    path = base / "music" / "data_moods.csv"
    if not path.is_file():
        raise SystemExit(f"no catalog at {path}: set MOODLIFT_SHARED_DATA to the shared data dir")
    return path


def bench_settings(tmp: Path, **limits: int) -> Settings:
    """Production defaults except: the database and paths in ``tmp``, the shared catalog, and
    the rate limits (plus any other ``limits`` given)."""
    models = load_settings(
        env={k: v for k, v in os.environ.items() if k.startswith("MOODLIFT_MODELS_")}
    ).models
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"),
        catalog=CatalogSettings(sources=(SourceSpec(str(shared_music_csv())),)),
        limits=LimitsSettings(
            photos_per_minute=PHOTOS_PER_MINUTE, actions_per_minute=PHOTOS_PER_MINUTE, **limits
        ),
        paths=PathsSettings(data_dir=tmp / "data", cache_dir=tmp / "cache"),
        spotify=SpotifySettings(**OFFLINE_SPOTIFY, timeout=0.5),
        models=models,
    )


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment for a ``moodlift`` subprocess with the settings of :func:`bench_settings`
    (the caller's own MOODLIFT_* variables are dropped, except where the models live).

    ``PYTHONPATH`` puts this checkout first: the ``moodlift`` script and a launcher run as a
    file would otherwise import whichever checkout the package was installed from."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MOODLIFT_") or k.startswith("MOODLIFT_MODELS_")
    }
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(path),
            "MOODLIFT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}",
            "MOODLIFT_CATALOG_SOURCES": str(shared_music_csv()),
            "MOODLIFT_LIMITS_PHOTOS_PER_MINUTE": str(PHOTOS_PER_MINUTE),
            "MOODLIFT_PATHS_DATA_DIR": str(tmp / "data"),
            "MOODLIFT_PATHS_CACHE_DIR": str(tmp / "cache"),
            "MOODLIFT_SPOTIFY_TIMEOUT": "0.5",
            **{f"MOODLIFT_SPOTIFY_{k.upper()}": v for k, v in OFFLINE_SPOTIFY.items()},
            **extra,
        }
    )
    return env


def telegram_bot_env(tmp: Path, fake: FakeTelegramAPI, **extra: str) -> dict[str, str]:
    """:func:`bench_env` for ``moodlift run telegram`` polling the fake Bot API, logging warnings."""
    return bench_env(
        tmp,
        MOODLIFT_TELEGRAM_TOKEN=fake.token,
        MOODLIFT_TELEGRAM_API_URL=fake.base_url,
        MOODLIFT_TELEGRAM_FILE_URL=fake.base_file_url,
        MOODLIFT_TELEGRAM_POLL_TIMEOUT="1",
        MOODLIFT_LOGGING_LEVEL="WARNING",
        **extra,
    )


async def open_service(settings: Settings) -> MoodLifter:
    """The real core, with the catalog imported, ready to serve."""
    service = await MoodLifter.create(settings)
    await ensure_catalog(settings, service.store)
    return service
