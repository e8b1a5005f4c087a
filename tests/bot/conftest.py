"""The real core service for the adapters' end-to-end tests: a SQLite file in tmp_path, the
labelled catalog from the shared data, the app's own models, and Spotify kept offline."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from bot.telegram import CHAT_ACTION_AFTER, MoodApplication, build_application, polling
from core.catalog import ensure_catalog
from core.config import (
    CatalogSettings,
    DatabaseSettings,
    LimitsSettings,
    PathsSettings,
    Secret,
    Settings,
    SpotifySettings,
    TelegramSettings,
    load_settings,
)
from core.service import MoodLifter
from data.catalog_sources import SourceSpec
from tests.fakes.telegram_api import FakeTelegramAPI

# Nothing listens on port 9 (discard): art lookups fail at once and the drawn card is used,
# so no test ever reaches the real Spotify.
OFFLINE_SPOTIFY = SpotifySettings(
    api_url="http://127.0.0.1:9/v1/",
    token_url="http://127.0.0.1:9/api/token",
    oembed_url="http://127.0.0.1:9/oembed",
    timeout=0.5,
)


def service_settings(tmp_path: Path, music_dir: Path, limits: LimitsSettings) -> Settings:
    """Settings for a real service; skips the test when no emotion model has been exported.

    The models are the app's own (``models/``, or wherever ``MOODLIFT_MODELS_*`` point).
    """
    models = load_settings(
        env={k: v for k, v in os.environ.items() if k.startswith("MOODLIFT_MODELS_")}
    ).models
    if not models.emotion_path.is_file():
        pytest.skip(f"no exported emotion model at {models.emotion_path}")
    return Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'moodlift.sqlite3'}"),
        catalog=CatalogSettings(sources=(SourceSpec(str(music_dir / "data_moods.csv")),)),
        spotify=OFFLINE_SPOTIFY,
        limits=limits,
        paths=PathsSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache"),
        models=models,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where :func:`service_settings` puts the database."""
    return tmp_path / "moodlift.sqlite3"


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[MoodLifter]:
    """The real core service with the catalog imported; closed after the test."""
    service = await MoodLifter.create(settings)
    await ensure_catalog(settings, service.store)
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture(scope="module")
def selfie() -> bytes:
    """A real photo with one clear face (Eileen Collins, from scikit-image), as a JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
def chat_action_after() -> float:
    """The app's delay before "sending a photo…"; a test parametrizes it to pin the behaviour."""
    return CHAT_ACTION_AFTER


@pytest.fixture
async def app(
    service: MoodLifter, settings: Settings, fake: FakeTelegramAPI, chat_action_after: float
) -> AsyncIterator[MoodApplication]:
    """The application exactly as production builds it, polling the fake server."""
    telegram = TelegramSettings(
        token=Secret(fake.token), api_url=fake.base_url, file_url=fake.base_file_url
    )
    application = build_application(
        service,
        telegram,
        max_image_bytes=settings.limits.max_image_bytes,
        chat_action_after=chat_action_after,
    )
    async with polling(application, poll_timeout=1):
        yield application
