"""Song-mood model: features, the train/eval commands on a small subset, the packaged artifact."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from data import music
from models import evaluate_music, train_music
from models.music_candidates import CANDIDATES, build, cross_validate
from models.music_features import ENGINEERED_FEATURES, FeatureError, MoodFeatures, as_feature_frame
from models.music_mood import DEFAULT_ARTIFACT, ModelArtifactError, MusicMoodModel

# The seed's MLP under the same repeated 10-fold CV (FACTS.md, "Songs").
SEED_MLP_ACCURACY = 0.813

CALM_ROW = {  # quiet, acoustic, instrumental, slow
    "danceability": 0.25, "acousticness": 0.97, "energy": 0.06, "instrumentalness": 0.92,
    "liveness": 0.10, "valence": 0.08, "loudness": -26.0, "speechiness": 0.04,
    "tempo": 72.0, "duration_ms": 170_000,
}  # fmt: skip
ENERGETIC_ROW = {  # loud, electric, dense
    "danceability": 0.55, "acousticness": 0.002, "energy": 0.96, "instrumentalness": 0.0,
    "liveness": 0.25, "valence": 0.40, "loudness": -3.5, "speechiness": 0.09,
    "tempo": 150.0, "duration_ms": 200_000,
}  # fmt: skip


@pytest.fixture(scope="module")
def small_music_dir(music_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified 160-track subset (and 50 catalog rows) in a temporary folder."""
    folder = tmp_path_factory.mktemp("music")
    labelled = pd.read_csv(music_dir / music.LABELLED_FILE)
    subset = labelled.groupby("mood", group_keys=False).sample(n=40, random_state=0)
    subset.to_csv(folder / music.LABELLED_FILE, index=False)
    pd.read_csv(music_dir / music.CATALOG_FILE, nrows=50).to_csv(
        folder / music.CATALOG_FILE, index=False
    )
    return folder


@pytest.fixture(scope="module")
def trained(small_music_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of a quick ``train music`` run on the subset."""
    out = tmp_path_factory.mktemp("out")
    args = ["--data", str(small_music_dir), "--out", str(out), "--folds", "3", "--repeats", "1"]
    assert train_music.main([*args, "--candidates", "logreg,soft_vote", "--no-artist-check"]) == 0
    return out


def test_features_accept_both_files_duration_names() -> None:
    as_10s = as_feature_frame([CALM_ROW])
    as_moods = as_feature_frame([{**{k: v for k, v in CALM_ROW.items() if k != "duration_ms"},
                                  "length": CALM_ROW["duration_ms"]}])  # fmt: skip
    pd.testing.assert_frame_equal(as_10s, as_moods)
    engineered = MoodFeatures().fit(as_10s).transform(as_10s)
    assert tuple(engineered.columns) == ENGINEERED_FEATURES
    assert engineered.notna().all().all()


def test_missing_column_names_the_column() -> None:
    row = {k: v for k, v in CALM_ROW.items() if k != "valence"}
    with pytest.raises(FeatureError, match=r"missing feature column.*valence"):
        as_feature_frame([row])


def test_non_numeric_value_names_row_and_column() -> None:
    with pytest.raises(FeatureError, match=r"row 1: 'tempo'"):
        as_feature_frame([CALM_ROW, {**CALM_ROW, "tempo": "fast"}])


def test_train_writes_artifact_and_metrics(trained: Path) -> None:
    metrics = json.loads((trained / train_music.METRICS_NAME).read_text())
    assert set(metrics["candidates"]) == {"logreg", "soft_vote"}
    assert metrics["winner"] in metrics["candidates"]
    assert metrics["catalog_prediction"]["tracks"] == 50
    assert sum(metrics["catalog_prediction"]["by_mood"].values()) == 50
    decade = metrics["winner_out_of_fold_catalog_decade"]
    assert decade["years"] == "2010-2019" and decade["tracks"] + decade["other_tracks"] == 160
    assert 0.25 <= decade["accuracy"] <= 1.0
    assert (trained / train_music.PLOT_NAME).stat().st_size > 0


def test_round_trip_predicts_rows_in_10s_format(trained: Path, music_dir: Path) -> None:
    model = MusicMoodModel.load(trained / train_music.ARTIFACT_NAME)
    assert model.version.startswith(model.recipe + "-")
    catalog = pd.read_csv(music_dir / music.CATALOG_FILE, nrows=20)  # duration_ms, extra columns
    predictions = model.predict(catalog)
    assert len(predictions) == 20
    assert all(mood in music.MOODS and 0.25 <= conf <= 1.0 for mood, conf in predictions)
    again = MusicMoodModel.load(trained / train_music.ARTIFACT_NAME).predict(catalog)
    assert again == predictions
    assert model.predict([]) == []


def test_same_settings_same_result(small_music_dir: Path, trained: Path, tmp_path: Path) -> None:
    args = [
        "--data",
        str(small_music_dir),
        "--out",
        str(tmp_path),
        "--folds",
        "3",
        "--repeats",
        "1",
    ]
    assert train_music.main([*args, "--candidates", "logreg,soft_vote"]) == 0
    first = json.loads((trained / train_music.METRICS_NAME).read_text())
    second = json.loads((tmp_path / train_music.METRICS_NAME).read_text())
    for key in ("version", "accuracy_mean", "catalog_prediction"):
        assert first[key] == second[key]


def test_eval_json_shape(small_music_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--data", str(small_music_dir), "--folds", "3", "--repeats", "1", "--json"]
    assert evaluate_music.main([*args, "--recipe", "logreg"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recipe"] == "logreg"
    assert report["folds"] == 3 and report["repeats"] == 1
    assert 0.5 < report["accuracy_mean"] <= 1.0 and report["accuracy_std"] >= 0.0
    assert len(report["fold_accuracies"]) == 3


def test_eval_defaults_to_the_committed_winner() -> None:
    committed = json.loads(DEFAULT_ARTIFACT.with_suffix(".json").read_text())
    assert evaluate_music.chosen_recipe() == committed["winner"]


def test_committed_artifact_beats_the_seed_and_reads_obvious_moods() -> None:
    model = MusicMoodModel.load()
    metrics = json.loads(DEFAULT_ARTIFACT.with_suffix(".json").read_text())
    assert model.version == metrics["version"] and model.recipe == metrics["winner"]
    assert metrics["folds"] == 10 and metrics["repeats"] == 5
    assert metrics["accuracy_mean"] >= SEED_MLP_ACCURACY
    # the same folds: the winner beats the seed network reproduced in Keras
    assert metrics["accuracy_mean"] > metrics["candidates"]["seed_mlp_keras"]["accuracy_mean"]
    (calm, _), (energetic, _) = model.predict([CALM_ROW, ENERGETIC_ROW])
    assert (calm, energetic) == ("calm", "energetic")


def test_missing_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match="no song-mood model"):
        MusicMoodModel.load(tmp_path / "absent.joblib")


def test_unknown_candidate_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown music candidate"):
        build("nope", seed=0)
    with pytest.raises(SystemExit):
        train_music.parse_args(["--candidates", "nope"])
    assert "soft_vote" in CANDIDATES


def test_every_servable_candidate_fits_a_tiny_set(small_music_dir: Path) -> None:
    """Each factory builds a working pipeline (Keras and the slow ones left out for speed)."""
    tracks = music.read_labelled(small_music_dir / music.LABELLED_FILE)
    with threadpool_limits(limits=1):  # OpenMP trees crawl when they fight a busy CPU
        for name in ("svm_raw", "hist_gb", "mlp_bag", "gpc"):
            result = cross_validate(name, tracks.features, tracks.moods, folds=2, repeats=1, seed=0)
            assert result.mean > 0.5, name


def test_gaussian_process_pickles_without_its_cholesky_factors(small_music_dir: Path) -> None:
    """The GP member drops its n × n factors when saved and rebuilds them bit for bit on load."""
    tracks = music.read_labelled(small_music_dir / music.LABELLED_FILE)
    with threadpool_limits(limits=1):
        model = build("gpc", seed=0).fit(tracks.features, tracks.moods)
        rows = pd.DataFrame([CALM_ROW, ENERGETIC_ROW])
        before = model.predict_proba(rows)
        saved = pickle.dumps(model)
        after = pickle.loads(saved).predict_proba(rows)
        # Under the same thread limit: BLAS with more threads sums in another order (1e-13 apart).
        live = model.predict_proba(rows)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(live, before)  # the live model is intact
    one_factor = len(tracks) ** 2 * 8  # bytes of one float64 Cholesky factor
    assert len(saved) < one_factor
