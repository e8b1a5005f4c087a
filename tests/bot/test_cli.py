"""The ``moodlift`` command, run in-process with a real SQLite file and real CSVs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from bot.cli import main
from core.store import head_revision
from tests.core.helpers import MOODS_HEADER, moods_line


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private data/cache directory; no user config leaks in."""
    monkeypatch.delenv("MOODLIFT_CONFIG", raising=False)
    monkeypatch.setenv("MOODLIFT_PATHS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MOODLIFT_PATHS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MOODLIFT_LOGGING_LEVEL", "WARNING")
    return tmp_path


def catalog(tmp_path: Path, moods: list[str]) -> Path:
    path = tmp_path / "moods.csv"
    lines = [MOODS_HEADER, *(moods_line(n, m) for n, m in enumerate(moods))]
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_db_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = head_revision()
    assert main(["db", "current"]) == 0
    assert f"moodlift.sqlite3 yet (head is {head})" in capsys.readouterr().out
    assert not (env / "data").exists()  # asking made nothing
    assert main(["db", "upgrade"]) == 0
    assert f"database at revision {head}" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == f"{head} (up to date)"
    assert main(["db", "downgrade", "base"]) == 0
    assert "base (empty)" in capsys.readouterr().out
    assert (env / "data" / "moodlift.sqlite3").is_file()


def test_import_stats_and_recommend_without_repeats(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "stats"]) == 0
    assert "the catalog is empty: `moodlift run`" in capsys.readouterr().out  # says how to fill it
    source = catalog(env, ["Sad", "Sad", "Calm", "Angry"])
    assert main(["catalog", "import", str(source)]) == 0
    captured = capsys.readouterr()
    assert (
        "moods.csv: 3 rows, 3 new, 0 already in the catalog, 0 repeated ids, 1 skipped"
        in captured.out
    )
    assert "moods.csv:5: unknown mood 'Angry'" in captured.err
    assert main(["catalog", "stats"]) == 0
    stats = capsys.readouterr().out
    assert "sad               2" in stats and "total             3" in stats
    assert "the catalog is empty" not in stats

    titles = []
    for _ in range(3):
        assert main(["recommend", "--user", "ann", "--emotion", "sad"]) == 0
        out = capsys.readouterr().out
        titles.append(out.splitlines()[0])
        assert "you look sad — here is a sad song to keep you company" in out
    assert len(set(titles[:2])) == 2
    # The third call starts a new round, said once.
    assert out.count("note:") == 1 and "You've heard all my sad songs" in out
    assert main(["recommend", "--user", "ann", "--emotion", "fear", "--mode", "match"]) == 0
    assert "mood:   calm" in capsys.readouterr().out


def test_errors_are_one_line_and_non_zero(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--config", str(env / "missing.toml"), "db", "current"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"moodlift: error: config file {env / 'missing.toml'} does not exist"

    monkeypatch.setenv("MOODLIFT_LIMITS_WORKERS", "many")
    assert main(["catalog", "stats"]) == 1
    assert "MOODLIFT_LIMITS_WORKERS = 'many' is invalid" in capsys.readouterr().err
    monkeypatch.delenv("MOODLIFT_LIMITS_WORKERS")

    assert main(["recommend", "--user", "ann", "--emotion", "happy"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no happy tracks" in err and "Traceback" not in err

    assert main(["catalog", "import", str(env / "none.csv")]) == 1
    assert "no such file" in capsys.readouterr().err

    with pytest.raises(SystemExit) as usage:
        main(["recommend", "--user", "ann", "--emotion", "bored"])
    assert usage.value.code == 2


@pytest.mark.parametrize(
    ("setting", "value", "command", "said"),
    [
        (None, None, ["db", "upgrade", "zzz"], "Can't locate revision identified by 'zzz'"),
        (
            "MOODLIFT_DATABASE_URL",
            "postgresql+asyncpg://moodlift:pw@127.0.0.1:1/moodlift",
            ["db", "current"],
            "ConnectionRefusedError",
        ),
        ("MOODLIFT_PATHS_DATA_DIR", "{tmp}/a-file", ["db", "upgrade"], "a-file"),
        ("MOODLIFT_MODELS_EMOTION_PATH", "{tmp}/none.tflite", ["analyze", "x.jpg"], "none.tflite"),
        ("MOODLIFT_MODELS_FACES_DIR", "{tmp}", ["analyze", "x.jpg"], "not a usable face model"),
        (
            "MOODLIFT_MODELS_MUSIC_PATH",
            "{tmp}/a-file",
            ["catalog", "classify"],
            "unreadable song-mood model",
        ),
        (None, None, ["eval", "music", "--", "--data", "{tmp}/none"], "no such file"),
    ],
)
def test_failures_of_the_system_or_of_model_files_are_one_line(
    setting: str | None,
    value: str | None,
    command: list[str],
    said: str,
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that refuses, a data folder that is a file, a missing or damaged model file,
    an unknown revision: one line that names it, exit 1, no traceback, no password."""
    (env / "a-file").write_bytes(b"\x80\x04junk")
    if setting is not None:
        assert value is not None
        monkeypatch.setenv(setting, value.format(tmp=env))
    assert main([part.format(tmp=env) for part in command]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("INFO: Created TensorFlow")]
    assert len(lines) == 1 and lines[0].startswith("moodlift: error: "), err
    assert said in lines[0] and "pw@" not in err


def test_a_system_error_without_words_is_named_and_kept_for_debugging(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def times_out(*args: object) -> int:
        raise TimeoutError

    monkeypatch.setattr("bot.cli._db", times_out)
    with caplog.at_level("DEBUG", logger="bot.cli"):
        assert main(["db", "current"]) == 1
    assert capsys.readouterr().err == "moodlift: error: TimeoutError\n"
    assert "Traceback" in caplog.text and "times_out" in caplog.text


def test_a_bad_number_or_a_blank_name_is_named_as_such(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["catalog", "art", "--limit", "x"])
    assert "argument --limit: 'x' is not a whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["recommend", "--user", " ", "--emotion", "sad"])
    assert "argument --user: a user name cannot be blank" in capsys.readouterr().err


def test_train_and_eval_hand_their_arguments_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("models.train_music")
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "models.train_music", fake)
    assert main(["train", "music", "--epochs", "3", "--out", "x"]) == 0
    assert main(["train", "music", "--", "--help"]) == 0
    assert seen == [["--epochs", "3", "--out", "x"], ["--help"]]

    monkeypatch.setitem(sys.modules, "models.evaluate_music", None)  # not importable
    assert main(["eval", "music"]) == 1
    assert "eval music is not available" in capsys.readouterr().err


def test_analyze_reports_every_file_with_the_same_keys_and_fails_if_one_did(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from PIL import Image
    from skimage import data

    from core.emotion import EMOTIONS
    from core.service import NO_FACE

    assert main(["catalog", "import", str(catalog(env, ["Happy", "Happy", "Calm"]))]) == 0
    selfie, blank, text = env / "me.jpg", env / "wall.png", env / "notes.jpg"
    Image.fromarray(data.astronaut()).save(selfie, quality=92)
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    text.write_text("not a photo")
    capsys.readouterr()

    assert main(["analyze", str(selfie), str(blank), str(text), "--json"]) == 1  # one failed
    found, faceless, broken = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    keys = {"file", "faces", "emotion", "mood", "track", "note", "error"}
    assert set(found) == set(faceless) == set(broken) == keys
    (face,) = found["faces"]
    assert len(face["box"]) == 4 and face["emotion"] == found["emotion"] == "happy"
    assert list(face["probabilities"]) == list(EMOTIONS)
    assert found["mood"] == "happy" and found["track"]["url"].startswith("https://open.spotify")
    assert found["error"] is None and found["note"] is None
    assert faceless["faces"] == [] and faceless["note"] == NO_FACE and faceless["track"] is None
    assert broken["error"] and broken["faces"] == [] and broken["file"] == str(text)

    assert main(["analyze", str(selfie), str(blank)]) == 0
    shown = capsys.readouterr().out
    assert "happy" in shown and f"no face found: {NO_FACE}" in shown
