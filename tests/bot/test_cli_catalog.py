"""``moodlift catalog classify`` and ``stats``, in-process, on the real files and model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli import main
from core.catalog import ImportReport, ensure_catalog
from core.config import load_settings
from core.store import Store
from models.music_mood import MusicMoodModel
from tests.core.helpers import MOODS_HEADER, moods_line
from tests.core.test_classify import subset_of_hits


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data/cache directory and the default threshold; no user config leaks in."""
    monkeypatch.delenv("MOODLIFT_CONFIG", raising=False)
    monkeypatch.delenv("MOODLIFT_CATALOG_MIN_MOOD_CONFIDENCE", raising=False)
    monkeypatch.delenv("MOODLIFT_MODELS_MUSIC_PATH", raising=False)
    monkeypatch.setenv("MOODLIFT_PATHS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOODLIFT_PATHS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MOODLIFT_LOGGING_LEVEL", "WARNING")
    return tmp_path


def _row(stats: str, name: str) -> list[str]:
    return next(line.split() for line in stats.splitlines() if line.startswith(name + " "))


def test_classify_then_stats_by_source(
    env: Path, music_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    hits = subset_of_hits(music_dir, env / "hits.csv")
    assert main(["catalog", "import", str(music_dir / "data_moods.csv"), str(hits)]) == 0
    imported = capsys.readouterr().out
    assert _row(imported, "no mood yet") == ["no", "mood", "yet", "150"]
    assert "moodlift catalog classify" in imported

    assert main(["catalog", "classify"]) == 0
    out = capsys.readouterr().out
    assert "150 tracks without a label; 150 newly assigned, 0 changed mood" in out
    total = _row(out, "total")
    served, label, model, held = (int(n) for n in total[1:])
    assert (label, model + held, served) == (686, 150, 686 + model)
    assert 0 < held < 75
    assert f"held back: {held} model moods below catalog.min_mood_confidence = 0.6" in out
    assert f"model {MusicMoodModel.load().version}: 150 tracks" in out  # the committed model
    assert "moodlift catalog classify" not in out

    assert main(["catalog", "classify"]) == 0
    again = capsys.readouterr().out
    assert "0 newly assigned, 0 changed mood, 0 re-scored, 150 unchanged" in again
    assert _row(again, "total") == total

    monkeypatch.setenv("MOODLIFT_CATALOG_MIN_MOOD_CONFIDENCE", "0")
    assert main(["catalog", "stats"]) == 0
    assert _row(capsys.readouterr().out, "total")[1:] == ["836", "686", "150", "0"]


def test_classify_without_a_model_is_one_clear_error(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("MOODLIFT_MODELS_MUSIC_PATH", str(env / "none.joblib"))
    assert main(["catalog", "classify"]) == 1
    err = capsys.readouterr().err
    assert "none.joblib: no song-mood model here" in err and "Traceback" not in err


def test_an_import_by_the_command_is_recorded_for_the_next_start(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """``moodlift catalog import FILE`` records the import, so a start with FILE configured
    does not read it again (here it is gone by then, and nothing fails)."""
    path = env / "m.csv"
    path.write_text(MOODS_HEADER + "\n" + moods_line(1, "Happy") + "\n")
    assert main(["catalog", "import", str(path)]) == 0
    assert "m.csv: 1 rows, 1 new" in capsys.readouterr().out
    path.unlink()
    monkeypatch.setenv("MOODLIFT_CATALOG_SOURCES", str(path))

    async def next_start() -> list[ImportReport]:
        settings = load_settings()
        store = await Store.open(settings)
        try:
            return await ensure_catalog(settings, store)
        finally:
            await store.close()

    assert asyncio.run(next_start()) == []
