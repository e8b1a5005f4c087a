"""Evaluate the served emotion model on any FER2013-format CSV (or folder).

    moodlift eval emotion --data CSV [--usage NAME] [--json] [--model PATH]

It runs exactly what the bot runs: the exported .tflite on LiteRT, averaged over the test-time
views its JSON records (see ``models.emotion_views``), so the numbers printed are the numbers
users get. Accuracy, per-class recall and the confusion matrix
(rows: truth, columns: prediction); ``--json`` prints them as one object.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from data.fer2013 import EMOTIONS, FerFormatError, FerSplit, load
from models.emotion_report import score
from models.emotion_runtime import EmotionModelError, LiteEmotionClassifier
from models.emotion_views import AS_IS

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parent / "emotion.tflite"
_BATCH = 256


def evaluate_served(classifier: LiteEmotionClassifier, split: FerSplit) -> dict:
    """Score the classifier as it serves (its own test-time views) on every face of ``split``."""
    started = time.perf_counter()
    chunks = [
        classifier.predict(split.images[i : i + _BATCH]) for i in range(0, len(split), _BATCH)
    ]
    elapsed = time.perf_counter() - started
    probabilities = np.concatenate(chunks) if chunks else np.zeros((0, len(EMOTIONS)))
    metrics = score(split.labels, probabilities)
    metrics["views"] = [view.name for view in classifier.views]
    metrics["ms_per_face"] = round(1000 * elapsed / max(len(split), 1), 3)
    return metrics


def format_report(metrics: dict, title: str) -> str:
    """A plain-text report: accuracy, recall per emotion, confusion matrix."""
    width = max(len(name) for name in EMOTIONS) + 2
    lines = [
        title,
        f"faces: {metrics['n']}   accuracy: {metrics['accuracy']:.4f}"
        f"   (views: {'; '.join(metrics['views'])}; {metrics['ms_per_face']} ms/face)",
        "",
        "recall per emotion:",
    ]
    for name in EMOTIONS:
        lines.append(f"  {name:<{width}}{metrics['per_class_recall'][name]:.4f}")
    lines += ["", "confusion matrix (rows: truth, columns: prediction):"]
    lines.append(" " * width + "".join(f"{name[:7]:>9}" for name in EMOTIONS))
    for name, row in zip(EMOTIONS, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{count:>9}" for count in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moodlift eval emotion", description=__doc__)
    parser.add_argument("--data", required=True, type=Path, help="FER2013 CSV (.csv/.gz) or folder")
    parser.add_argument("--usage", help="only rows with this Usage, e.g. PublicTest (default: all)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the .tflite to evaluate")
    parser.add_argument(
        "--plain", action="store_true", help="one pass per face, no test-time views"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        classifier = LiteEmotionClassifier(args.model, views=AS_IS if args.plain else None)
        split = load(args.data, {args.usage} if args.usage else None)
    except (EmotionModelError, FerFormatError) as error:
        print(f"moodlift eval emotion: error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    if len(split) == 0:
        print(f"moodlift eval emotion: error: no rows with Usage {args.usage!r}", file=sys.stderr)  # noqa: T201
        return 2
    metrics = evaluate_served(classifier, split)
    metrics["model"] = str(args.model)
    metrics["data"] = str(args.data)
    metrics["usage"] = args.usage
    if args.json:
        print(json.dumps(metrics))  # noqa: T201
    else:
        title = f"{args.model.name} on {args.data.name}" + (
            f" ({args.usage})" if args.usage else ""
        )
        print(format_report(metrics, title))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
