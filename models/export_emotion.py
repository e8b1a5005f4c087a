"""Export a trained Keras emotion model to the .tflite we serve, with metrics measured on LiteRT.

    python -m models.export_emotion --model runs/emotion/best.keras [OTHER.keras ...] --data FER2013_CSV

Several models are served as one ensemble: one graph that averages their probabilities, so the
runtime and its callers stay the same. Writes ``models/emotion.tflite`` and
``models/emotion.json``. Dynamic-range quantisation is tried as well and kept only if it agrees with the float model on >= 99 % of top-1 answers and
loses < 0.3 points of accuracy; the JSON records both candidates, so the choice can be checked.
Then the test-time views the served model averages over are chosen on the same faces
(:func:`models.emotion_views.choose`) and recorded in the JSON with the accuracy they give.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data.fer2013 import FerSplit, load_cached
from models import emotion_report, emotion_views
from models.emotion_runtime import LiteEmotionClassifier

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODELS_DIR.parent
MIN_AGREEMENT = 0.99
MAX_ACCURACY_LOSS = 0.003
MAX_PASSES = emotion_views.MAX_SERVED_VIEWS  # network passes per face, over views and members


@dataclass(frozen=True)
class ExportSettings:
    models: tuple[Path, ...]
    data: Path
    usage: str = "PublicTest"
    out: Path = MODELS_DIR / "emotion.tflite"
    cache_dir: Path = REPO_ROOT / ".cache"
    quantize: str = "auto"  # auto | never | always
    max_passes: int = MAX_PASSES  # network passes per face, over views and members


def convert(model: keras.Model, quantize: bool) -> bytes:
    """Keras model -> .tflite bytes with a dynamic batch dimension; float32 unless quantised.

    Goes through a SavedModel: converting a traced function directly lost the weights.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float math
        return converter.convert()


def load_served(paths: Sequence[Path]) -> keras.Model:
    """One model, or an ensemble of several as one functional model averaging their softmax.

    Each member is wrapped under its own name (the trained nets all share one name, and a
    functional model's layer names must be unique).
    """
    import keras

    members = [keras.models.load_model(path, compile=False) for path in paths]
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(members[0].inputs[0].shape[1:])
    wrapped = [
        keras.Model(member.inputs[0], member.outputs[0], name=f"member_{i}")
        for i, member in enumerate(members)
    ]
    outputs = keras.layers.Average(name="ensemble_mean")([member(inputs) for member in wrapped])
    return keras.Model(inputs, outputs, name="emotion_ensemble")


Predictions = dict[emotion_views.View, np.ndarray]  # a view -> probabilities of every face


def _predict(path: Path, split: FerSplit, views: Sequence[emotion_views.View]) -> Predictions:
    """The serving runtime's probabilities for every face in each of ``views``."""
    runtime = LiteEmotionClassifier(path, views=emotion_views.AS_IS)
    x = split.images[..., None].astype(np.float32) / 255
    return {
        view: np.concatenate(
            [runtime.predict_raw(view.apply(x[i : i + 256])) for i in range(0, len(x), 256)]
        )
        for view in views
    }


def _measure(path: Path, split: FerSplit) -> tuple[dict, Predictions]:
    """Metrics through the serving runtime, and its as-is and mirrored predictions (which the
    choice of views starts from)."""
    started = time.perf_counter()
    by_view = _predict(path, split, emotion_views.MIRRORED)
    seconds = (time.perf_counter() - started) / len(emotion_views.MIRRORED)
    plain, mirrored = (by_view[view] for view in emotion_views.MIRRORED)
    metrics = emotion_report.score(split.labels, plain)
    metrics["accuracy_flip"] = emotion_report.score(split.labels, (plain + mirrored) / 2)[
        "accuracy"
    ]
    metrics["ms_per_face_pass"] = round(1000 * seconds / len(split), 3)
    return metrics, by_view


def export(settings: ExportSettings) -> dict:
    """Convert, measure both candidates on LiteRT, write the chosen .tflite and its JSON."""
    split = load_cached(settings.data, {settings.usage}, settings.cache_dir)
    log.info("%d %s faces for measuring", len(split), settings.usage)
    with tempfile.TemporaryDirectory() as tmp:
        # The trainer rewrites its checkpoints in place; read private copies.
        sources = [Path(tmp) / f"source_{i}.keras" for i in range(len(settings.models))]
        for model_path, source in zip(settings.models, sources, strict=True):
            shutil.copyfile(model_path, source)
        model = load_served(sources)
        keras_plain = np.concatenate(
            [
                np.asarray(model(split.images[i : i + 256, ..., None] / np.float32(255)))
                for i in range(0, len(split), 256)
            ]
        )
        candidates: dict[str, dict] = {}
        paths: dict[str, Path] = {}
        predictions: dict[str, Predictions] = {}
        kinds = ["float32"] if settings.quantize == "never" else ["float32", "dynamic_range"]
        for kind in kinds:
            paths[kind] = Path(tmp) / f"{kind}.tflite"
            paths[kind].write_bytes(convert(model, quantize=kind == "dynamic_range"))
            metrics, predictions[kind] = _measure(paths[kind], split)
            metrics["bytes"] = paths[kind].stat().st_size
            plain = predictions[kind][emotion_views.View()]
            metrics["keras_top1_agreement"] = _agreement(plain, keras_plain)
            candidates[kind] = metrics
            log.info(
                "%s: %d bytes, accuracy %.4f (flip %.4f), same top-1 as Keras on %.4f",
                kind,
                metrics["bytes"],
                metrics["accuracy"],
                metrics["accuracy_flip"],
                metrics["keras_top1_agreement"],
            )
        chosen = "float32"
        if "dynamic_range" in candidates:
            quant = candidates["dynamic_range"]
            quant["float32_top1_agreement"] = _agreement(
                predictions["dynamic_range"][emotion_views.View()],
                predictions["float32"][emotion_views.View()],
            )
            loss = candidates["float32"]["accuracy_flip"] - quant["accuracy_flip"]
            good = quant["float32_top1_agreement"] >= MIN_AGREEMENT and loss < MAX_ACCURACY_LOSS
            if settings.quantize == "always" or (settings.quantize == "auto" and good):
                chosen = "dynamic_range"
            log.info(
                "dynamic range: agreement %.4f, accuracy loss %.4f -> %s",
                quant["float32_top1_agreement"],
                loss,
                "kept" if good else "not kept",
            )
        # An ensemble's view costs one pass of every member: keep the same budget of passes.
        max_views = max(len(emotion_views.MIRRORED), settings.max_passes // len(settings.models))
        views, served, held_out = _choose_views(
            paths[chosen], split, max_views, predictions[chosen]
        )
        settings.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paths[chosen], settings.out)
    chosen_metrics = candidates[chosen]
    report = {
        "model": settings.out.name,
        "format": f"tflite {chosen}",
        "runtime": "LiteRT (ai-edge-litert)",
        "input": "float32 (N, 48, 48, 1) gray in [0, 1]",
        "labels": chosen_metrics["labels"],
        "evaluated_on": f"{Path(settings.data).name} Usage={settings.usage}",
        "n": chosen_metrics["n"],
        "accuracy": chosen_metrics["accuracy"],
        "accuracy_flip": chosen_metrics["accuracy_flip"],
        "accuracy_served": served["accuracy"],
        # The same choice made on half of the faces and scored on the other half.
        "accuracy_served_held_out": asdict(held_out),
        "views": emotion_views.to_json(views),
        "view_names": [view.name for view in views],
        "per_class_recall": chosen_metrics["per_class_recall"],
        "confusion_matrix": chosen_metrics["confusion_matrix"],
        "served_per_class_recall": served["per_class_recall"],
        "served_confusion_matrix": served["confusion_matrix"],
        "candidates": {
            kind: {k: v for k, v in m.items() if k not in {"confusion_matrix", "labels"}}
            for kind, m in candidates.items()
        },
        "source": _source_info(settings.models[0]),
        **(
            {"ensemble_of": [_source_info(path) for path in settings.models]}
            if len(settings.models) > 1
            else {}
        ),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m models.export_emotion " + " ".join(sys.argv[1:]),
    }
    settings.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _choose_views(
    path: Path, split: FerSplit, max_views: int, known: Predictions
) -> tuple[tuple[emotion_views.View, ...], dict, emotion_views.HeldOut]:
    """Pick the served test-time views on ``split``, score the model served with them, and
    score the choice itself on halves it did not see; ``known`` holds predictions already
    made (the as-is and mirrored faces)."""
    # Only the views a choice within ``max_views`` can reach: groups that fit beside as-is and
    # mirrored (a budget of two leaves none; a shifted group needs 18).
    room = max_views - len(emotion_views.MIRRORED)
    candidates = dict.fromkeys(
        [
            *emotion_views.MIRRORED,
            *(v for group in emotion_views.CANDIDATES if len(group) <= room for v in group),
        ]
    )
    missing = [view for view in candidates if view not in known]
    by_view = {**known, **_predict(path, split, missing)}
    views = emotion_views.choose(by_view, split.labels, max_views=max_views)
    served = emotion_report.score(split.labels, sum(by_view[view] for view in views) / len(views))
    held_out = emotion_views.held_out(by_view, split.labels, max_views=max_views)
    log.info(
        "served views: %s -> accuracy %.4f (chosen on half, scored on the other: %.4f against "
        "%.4f as-is and mirrored)",
        "; ".join(view.name for view in views),
        served["accuracy"],
        held_out.accuracy,
        held_out.mirrored_accuracy,
    )
    return views, served, held_out


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def _source_info(model: Path) -> dict:
    """Which checkpoint, and the run's settings and progress where the trainer left them."""
    info: dict = {"checkpoint": str(model)}
    for name in ("settings.json", "state.json"):
        path = Path(model).parent / name
        if path.is_file():
            try:
                info[name.removesuffix(".json")] = json.loads(path.read_text())
            except json.JSONDecodeError:
                log.warning("%s is not valid JSON; left out of the report", path)
    return info


def parse_args(argv: list[str] | None) -> ExportSettings:
    parser = argparse.ArgumentParser(prog="python -m models.export_emotion", description=__doc__)
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        nargs="+",
        help="a trained .keras model, or several to serve as one ensemble",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get(
            "MOODLIFT_FER2013", REPO_ROOT.parent / "shared/data/fer2013/fer2013.csv.gz"
        ),
        help="FER2013 CSV for the metrics",
    )
    parser.add_argument("--usage", default="PublicTest", help="rows to measure on")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "emotion.tflite")
    parser.add_argument("--quantize", choices=("auto", "never", "always"), default="auto")
    parser.add_argument(
        "--max-passes",
        type=int,
        default=MAX_PASSES,
        help="network passes per face the served views may cost, over all members",
    )
    args = parser.parse_args(argv)
    return ExportSettings(
        tuple(args.model),
        Path(args.data),
        args.usage,
        args.out,
        quantize=args.quantize,
        max_passes=args.max_passes,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = export(parse_args(argv))
    log.info(
        "wrote %s (%s, %d model%s): accuracy %.4f, flip-averaged %.4f, served (%d views) %.4f on %d faces",
        report["model"],
        report["format"],
        len(report.get("ensemble_of", [None])),
        "s" if "ensemble_of" in report else "",
        report["accuracy"],
        report["accuracy_flip"],
        len(report["views"]),
        report["accuracy_served"],
        report["n"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
