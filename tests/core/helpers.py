"""Small real CSV catalogs in the two published formats, for tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from core.config import Settings, load_settings
from core.store import Store
from core.store.schema import Rating

MOODS_HEADER = (
    "name,album,artist,id,release_date,popularity,length,danceability,acousticness,energy,"
    "instrumentalness,liveness,valence,loudness,speechiness,tempo,key,time_signature,mood"
)
HITS_HEADER = (
    "track,artist,uri,danceability,energy,key,loudness,mode,speechiness,acousticness,"
    "instrumentalness,liveness,valence,tempo,duration_ms,time_signature,chorus_hit,sections,target"
)


async def ratings(store: Store, user_id: int) -> dict[str, int]:
    """Every rating the store holds for the user: track id -> +1 or -1."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(Rating.track_id, Rating.value).where(Rating.user_id == user_id)
        )
        return {track_id: value for track_id, value in rows}


def track_id(n: int, prefix: str = "T") -> str:
    """A valid 22-character Spotify-style id."""
    return f"{prefix}{n:0>21}"


def moods_line(n: int, mood: str, *, name: str | None = None, prefix: str = "T") -> str:
    return (
        f"{name or f'Song {n}'},Album {n},Artist {n},{track_id(n, prefix)},2001-02-03,50,200000,"
        f"0.5,0.2,0.6,0.0,0.1,0.4,-7.5,0.05,120.0,5,4,{mood}"
    )


def hits_line(n: int, *, prefix: str = "H") -> str:
    return (
        f"Hit {n},Hit Artist {n},spotify:track:{track_id(n, prefix)},0.7,0.8,1,-4.8,1,0.08,0.02,"
        f"0,0.08,0.7,108.0,188493,4,41.2,10,1"
    )


def catalog_settings(tmp_path: Path, *sources: Path | str) -> Settings:
    """Settings whose catalog is ``sources`` (local files; ``PATH#sha256=HEX`` pins one), with data
    and cache in ``tmp_path``."""
    return load_settings(
        env={
            "MOODLIFT_CATALOG_SOURCES": ",".join(str(p) for p in sources),
            "MOODLIFT_PATHS_DATA_DIR": str(tmp_path / "data"),
            "MOODLIFT_PATHS_CACHE_DIR": str(tmp_path / "cache"),
        }
    )
