"""Re-run the cross-validation of the chosen song-mood recipe and print its accuracy.

The recipe is the winner recorded in ``models/music_mood.json`` by ``moodlift train music``
(``--recipe`` overrides it), so ``moodlift eval music`` reproduces the published figure with
the same folds and seed. ``--json`` prints one object for scripts and tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from data import music
from models import music_candidates as candidates
from models.train_music import METRICS_NAME, MODELS_DIR, MusicTrainSettings

log = logging.getLogger(__name__)


def chosen_recipe(metrics_path: Path = MODELS_DIR / METRICS_NAME) -> str:
    """The recipe the last training kept, or the default one when no metrics exist."""
    try:
        return str(json.loads(metrics_path.read_text(encoding="utf-8"))["winner"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return candidates.DEFAULT_RECIPE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = MusicTrainSettings()
    parser = argparse.ArgumentParser(prog="moodlift eval music", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=defaults.data, help="folder with data_moods.csv")
    parser.add_argument("--folds", type=int, default=defaults.folds)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--recipe", default=None, help="default: the winner in music_mood.json")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.recipe is not None and args.recipe not in candidates.CANDIDATES:
        parser.error(f"unknown recipe {args.recipe!r}; known: {', '.join(candidates.CANDIDATES)}")
    if args.folds < 2 or args.repeats < 1:
        parser.error("--folds must be ≥ 2 and --repeats ≥ 1")
    return args


def evaluate(recipe: str, data_dir: Path, folds: int, repeats: int, seed: int) -> dict[str, object]:
    """CV figures of ``recipe`` on the labelled tracks in ``data_dir``."""
    tracks = music.read_labelled(data_dir / music.LABELLED_FILE)
    with threadpool_limits(limits=1):
        result = candidates.cross_validate(
            recipe, tracks.features, tracks.moods, folds, repeats, seed
        )
    return {
        "recipe": recipe,
        **result.summary(),
        "seed": seed,
        "tracks": len(tracks),
        "fold_accuracies": [round(s, 4) for s in result.scores],
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``moodlift eval music``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    recipe = args.recipe or chosen_recipe()
    report = evaluate(recipe, Path(args.data), args.folds, args.repeats, args.seed)
    if args.json:
        print(json.dumps(report))  # noqa: T201 - the command's output
    else:
        scores = pd.Series(report["fold_accuracies"])
        print(  # noqa: T201 - the command's output
            f"{recipe}: accuracy {100 * report['accuracy_mean']:.2f} % "
            f"± {100 * report['accuracy_std']:.2f} "
            f"({args.repeats}×{args.folds}-fold stratified CV, seed {args.seed}, "
            f"{report['tracks']} tracks; fold range {100 * scores.min():.1f}–{100 * scores.max():.1f} %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
