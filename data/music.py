"""Read the two Spotify track files: the 686 mood-labelled tracks and the unlabelled 2010s catalog.

Both readers rename duration to ``duration_ms`` (the labelled file calls it ``length``) so that
training and prediction see the same columns, and both fail with the file and the missing
columns named rather than with a bare ``KeyError`` deep inside pandas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a file is read: the catalog import, through
    import pandas as pd  # default_music_dir, must not pay for it (~0.4 s, ~25 MB at start-up)

LABELLED_FILE = "data_moods.csv"
CATALOG_FILE = "dataset-of-10s.csv"
MOODS: tuple[str, ...] = ("calm", "energetic", "happy", "sad")
# Columns both files carry; ``length`` in the labelled file is renamed to ``duration_ms``.
AUDIO_COLUMNS: tuple[str, ...] = (
    "danceability",
    "acousticness",
    "energy",
    "instrumentalness",
    "liveness",
    "valence",
    "loudness",
    "speechiness",
    "tempo",
    "duration_ms",
    "key",
    "time_signature",
)
DURATION_ALIASES = {"length": "duration_ms"}


class MusicFormatError(ValueError):
    """A music CSV lacks columns or has unusable values; the message names the file."""


@dataclass(frozen=True)
class LabelledTracks:
    """The labelled tracks: audio columns (canonical names), lower-case moods and track info."""

    features: pd.DataFrame
    moods: pd.Series
    info: pd.DataFrame  # id, name, artist, album, release_date: for reports and checks

    def __len__(self) -> int:
        return len(self.moods)


def default_music_dir() -> Path:
    """``$MOODLIFT_SHARED_DATA/music`` or ``<repo>/../shared/data/music`` (read in place)."""
    configured = os.environ.get("MOODLIFT_SHARED_DATA")
    base = Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared/data"
    return base / "music"


def canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename duration aliases to ``duration_ms`` (a copy; the caller's frame is left alone)."""
    renames = {
        old: new
        for old, new in DURATION_ALIASES.items()
        if old in frame.columns and new not in frame.columns
    }
    return frame.rename(columns=renames) if renames else frame


def _read(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (set --data or MOODLIFT_SHARED_DATA)")
    import pandas as pd

    frame = canonical_columns(pd.read_csv(path))
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise MusicFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def read_labelled(path: Path) -> LabelledTracks:
    """The mood-labelled tracks (``data_moods.csv``), moods lower-cased to match the API."""
    frame = _read(path, (*AUDIO_COLUMNS, "mood"))
    moods = frame["mood"].astype(str).str.strip().str.lower()
    unknown = sorted(set(moods) - set(MOODS))
    if unknown:
        raise MusicFormatError(f"{path}: unknown mood(s) {', '.join(unknown)}")
    info_columns = [
        c for c in ("id", "name", "artist", "album", "release_date") if c in frame.columns
    ]
    return LabelledTracks(
        features=frame[list(AUDIO_COLUMNS)].reset_index(drop=True),
        moods=moods.rename("mood").reset_index(drop=True),
        info=frame[info_columns].reset_index(drop=True),
    )


def read_catalog(path: Path) -> pd.DataFrame:
    """The unlabelled catalog (``dataset-of-10s.csv``) with canonical audio column names."""
    return _read(path, AUDIO_COLUMNS).reset_index(drop=True)
