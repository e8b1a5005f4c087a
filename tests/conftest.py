"""Shared fixtures: where the read-only data sets live (``../shared`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MOODLIFT_SHARED_DATA`` or ``<repo>/../shared/data``; None when neither exists."""
    configured = os.environ.get("MOODLIFT_SHARED_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests that need it skip with a reason where it is absent."""
    found = shared_data_dir()
    if found is None:
        pytest.skip("shared data (../shared/data or MOODLIFT_SHARED_DATA) is not available")
    return found


@pytest.fixture(scope="session")
def fer2013_csv(shared_data: Path) -> Path:
    return shared_data / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def music_dir(shared_data: Path) -> Path:
    return shared_data / "music"
