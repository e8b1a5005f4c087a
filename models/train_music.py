"""Compare song-mood candidates under one repeated stratified K-fold CV, keep the winner.

Every candidate sees the same folds (``--seed``), with scaling and feature engineering fitted
inside each fold. The winner (best mean accuracy among the servable candidates) is refitted on
all labelled tracks and written to ``--out`` as ``music_mood.joblib``, with
``music_mood.json`` (every candidate's CV figures, an artist-grouped CV of the winner, the
predicted-mood distribution of the unlabelled catalog, the command) and ``music_mood_cv.png``.
Re-running with the same settings gives the same figures and the same version string.
``python -m models.train_music --help`` lists the settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from data import music
from models import music_candidates as candidates
from models.music_mood import MusicMoodModel

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent
ARTIFACT_NAME = "music_mood.joblib"
METRICS_NAME = "music_mood.json"
PLOT_NAME = "music_mood_cv.png"
CONFIDENCE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
CATALOG_YEARS = (2010, 2019)  # dataset-of-10s.csv holds tracks released in these years


@dataclass
class MusicTrainSettings:
    """Everything that decides a run's result; stored in the metrics file."""

    data: str = str(music.default_music_dir())
    folds: int = 10
    repeats: int = 5
    seed: int = 2026
    out: str = str(MODELS_DIR)
    candidates: tuple[str, ...] = candidates.DEFAULT_CANDIDATES
    artist_check: bool = True  # also CV the winner with artists kept out of their test folds


def parse_args(argv: list[str] | None) -> MusicTrainSettings:
    defaults = MusicTrainSettings()
    parser = argparse.ArgumentParser(
        prog="moodlift train music",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # where it writes, by default
    )
    parser.add_argument(
        "--data",
        default=defaults.data,
        help="folder with data_moods.csv (and dataset-of-10s.csv for the catalog report)",
    )
    parser.add_argument("--folds", type=int, default=defaults.folds, help="folds per repeat")
    parser.add_argument(
        "--repeats", type=int, default=defaults.repeats, help="cross-validation repeats"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="folds and model seeds")
    parser.add_argument(
        "--out",
        default=defaults.out,
        help="folder for the artifact and metrics (the served model's own: a trial run belongs elsewhere)",
    )
    parser.add_argument(
        "--candidates",
        default=",".join(defaults.candidates),
        help=f"comma-separated, from: {', '.join(candidates.CANDIDATES)}",
    )
    parser.add_argument("--no-artist-check", dest="artist_check", action="store_false")
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.candidates.split(",") if n.strip())
    unknown = [n for n in names if n not in candidates.CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s): {', '.join(unknown)}")
    if not any(n in candidates.SERVABLE for n in names):
        parser.error("--candidates needs at least one servable (scikit-learn) candidate")
    if args.folds < 2 or args.repeats < 1:
        parser.error("--folds must be ≥ 2 and --repeats ≥ 1")
    return MusicTrainSettings(
        data=args.data,
        folds=args.folds,
        repeats=args.repeats,
        seed=args.seed,
        out=args.out,
        candidates=names,
        artist_check=args.artist_check,
    )


def model_version(recipe: str, labelled_csv: Path, settings: MusicTrainSettings) -> str:
    """``<recipe>-<hash>`` of the data, seed and library: same inputs, same version.

    The catalog compares versions to decide whether tracks need re-classifying.
    """
    digest = hashlib.sha256(labelled_csv.read_bytes())
    digest.update(f"{recipe}|{settings.seed}|sklearn {sklearn.__version__}".encode())
    return f"{recipe}-{digest.hexdigest()[:10]}"


def catalog_report(model: MusicMoodModel, catalog_csv: Path) -> dict[str, object]:
    """How the unlabelled catalog would be labelled: moods, confidence quantiles, hold-backs."""
    tracks = music.read_catalog(catalog_csv)
    predicted = model.predict_frame(tracks)
    confidence = predicted["confidence"]
    by_mood = predicted["mood"].value_counts().reindex(model.labels, fill_value=0)
    quantiles = confidence.quantile([0.05, 0.1, 0.25, 0.5, 0.75, 0.9]).round(3)
    return {
        "file": catalog_csv.name,
        "tracks": len(predicted),
        "by_mood": {m: int(n) for m, n in by_mood.items()},
        "confidence_quantiles": {f"q{int(q * 100):02d}": float(v) for q, v in quantiles.items()},
        "below_threshold": {f"{t:.1f}": int((confidence < t).sum()) for t in CONFIDENCE_THRESHOLDS},
        "by_mood_at_or_above": {
            f"{t:.1f}": {
                m: int(((predicted["mood"] == m) & (confidence >= t)).sum()) for m in model.labels
            }
            for t in CONFIDENCE_THRESHOLDS
        },
    }


def out_of_fold(
    recipe: str, tracks: music.LabelledTracks, folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One K-fold pass of ``recipe``: whether each track's prediction is right, and its confidence."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    estimator = candidates.build(recipe, seed)
    proba = cross_val_predict(
        estimator, tracks.features, tracks.moods, cv=splitter, method="predict_proba"
    )
    labels = np.array(sorted(tracks.moods.unique()))  # the order predict_proba uses
    correct = labels[proba.argmax(axis=1)] == tracks.moods.to_numpy()
    return correct, proba.max(axis=1)


def by_confidence(correct: np.ndarray, confidence: np.ndarray) -> dict[str, dict[str, float]]:
    """Out-of-fold accuracy of the tracks kept at each confidence threshold.

    Read beside the catalog's confidence distribution to choose a serving threshold.
    """
    table = {}
    for threshold in (0.0, *CONFIDENCE_THRESHOLDS):
        kept = confidence >= threshold
        table[f"{threshold:.1f}"] = {
            "kept_share": round(float(kept.mean()), 4),
            "accuracy": _share(correct[kept]),
        }
    return table


def by_catalog_decade(correct: np.ndarray, info: pd.DataFrame) -> dict[str, object] | None:
    """Out-of-fold accuracy on the labelled tracks released in the catalog's decade, and the rest.

    Every unlabelled catalog track is from 2010-2019 while the labelled ones span 1963-2020 (the
    older ones mostly happy or energetic, the 2020 ones mostly calm), so the first figure is the
    one to expect on the catalog.
    """
    if "release_date" not in info:
        return None
    year = pd.to_numeric(info["release_date"].astype(str).str[:4], errors="coerce").to_numpy()
    first, last = CATALOG_YEARS
    inside = (year >= first) & (year <= last)
    return {
        "years": f"{first}-{last}",
        "tracks": int(inside.sum()),
        "accuracy": _share(correct[inside]),
        "other_tracks": int((~inside).sum()),
        "other_accuracy": _share(correct[~inside]),
    }


def _share(flags: np.ndarray) -> float | None:
    return round(float(flags.mean()), 4) if flags.size else None


def save_plot(results: list[candidates.CvResult], winner: str, path: Path) -> None:
    """Bar chart of mean ± std accuracy per candidate, winner highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(results, key=lambda r: r.mean)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ordered) + 1.2))
    colors = ["tab:orange" if r.name == winner else "tab:blue" for r in ordered]
    ax.barh(
        [r.name for r in ordered],
        [100 * r.mean for r in ordered],
        xerr=[100 * r.std for r in ordered],
        color=colors,
        capsize=3,
    )
    low = min(100 * (r.mean - r.std) for r in ordered)
    ax.set_xlim(max(0.0, low - 5), 100)
    ax.set_xlabel(f"accuracy, % ({ordered[0].repeats}×{ordered[0].folds}-fold CV, mean ± std)")
    ax.set_title("Song-mood candidates on data_moods.csv")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(settings: MusicTrainSettings) -> dict[str, object]:
    """Run the comparison, fit and save the winner, write metrics; returns the metrics."""
    data_dir = Path(settings.data)
    labelled_csv = data_dir / music.LABELLED_FILE
    tracks = music.read_labelled(labelled_csv)
    log.info("%d labelled tracks from %s", len(tracks), labelled_csv)
    x, y = tracks.features, tracks.moods

    results = [
        candidates.cross_validate(name, x, y, settings.folds, settings.repeats, settings.seed)
        for name in settings.candidates
    ]
    servable = [r for r in results if r.name in candidates.SERVABLE]
    best = max(servable, key=lambda r: r.mean)
    log.info("winner: %s (%.2f %%)", best.name, 100 * best.mean)

    grouped = None
    if settings.artist_check and "artist" in tracks.info:
        grouped = candidates.cross_validate_by_artist(
            best.name, x, y, tracks.info["artist"], settings.folds, settings.repeats, settings.seed
        )
        log.info(
            "winner, artist-grouped folds: %.2f %% ± %.2f", 100 * grouped.mean, 100 * grouped.std
        )

    correct, confidence = out_of_fold(best.name, tracks, settings.folds, settings.seed)
    held_out = by_confidence(correct, confidence)
    log.info("out-of-fold accuracy by confidence threshold: %s", held_out)
    decade = by_catalog_decade(correct, tracks.info)
    log.info("out-of-fold accuracy on the catalog's decade: %s", decade)

    pipeline = candidates.build(best.name, settings.seed).fit(x, y)
    model = MusicMoodModel(
        pipeline=pipeline,
        labels=music.MOODS,
        version=model_version(best.name, labelled_csv, settings),
        recipe=best.name,
    )
    out = Path(settings.out)
    model.save(out / ARTIFACT_NAME)

    catalog_csv = data_dir / music.CATALOG_FILE
    catalog = catalog_report(model, catalog_csv) if catalog_csv.is_file() else None
    if catalog is None:
        log.warning("%s not found: no catalog distribution in the metrics", catalog_csv)

    metrics: dict[str, object] = {
        "winner": best.name,
        "version": model.version,
        "accuracy_mean": round(best.mean, 4),
        "accuracy_std": round(best.std, 4),
        "folds": settings.folds,
        "repeats": settings.repeats,
        "seed": settings.seed,
        "tracks": len(tracks),
        "class_counts": {m: int(n) for m, n in y.value_counts().sort_index().items()},
        "majority_baseline": round(float(y.value_counts(normalize=True).max()), 4),
        "candidates": {r.name: r.summary() for r in results},
        "winner_artist_grouped_cv": grouped.summary() if grouped else None,
        "winner_out_of_fold_by_confidence": held_out,
        "winner_out_of_fold_catalog_decade": decade,
        "catalog_prediction": catalog,
        "settings": {**asdict(settings), "candidates": list(settings.candidates)},
        "command": shlex.join(["moodlift", "train", "music", *_cli_args(settings)]),
        "trained_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "sklearn_version": sklearn.__version__,
    }
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    save_plot(results, best.name, out / PLOT_NAME)
    log.info("wrote %s, %s, %s to %s", ARTIFACT_NAME, METRICS_NAME, PLOT_NAME, out)
    return metrics


def _cli_args(settings: MusicTrainSettings) -> list[str]:
    """The settings that differ from the defaults, as CLI flags (paths are left out)."""
    defaults = MusicTrainSettings()
    args: list[str] = []
    for flag in ("folds", "repeats", "seed"):
        if getattr(settings, flag) != getattr(defaults, flag):
            args += [f"--{flag}", str(getattr(settings, flag))]
    if settings.candidates != defaults.candidates:
        args += ["--candidates", ",".join(settings.candidates)]
    if not settings.artist_check:
        args.append("--no-artist-check")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``moodlift train music``."""
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    np.random.seed(settings.seed)  # nothing should draw from it; belt and braces
    with threadpool_limits(limits=1):  # the machine is shared with long trainings
        metrics = train(settings)
    log.info(
        "CV accuracy of %s: %.2f %% ± %.2f",
        metrics["winner"],
        100 * float(metrics["accuracy_mean"]),
        100 * float(metrics["accuracy_std"]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
