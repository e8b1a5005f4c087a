"""Per-face inference of the served emotion model: LiteRT, batch 1 and batch 8, against Keras.

    python -m bench.inference [--quick] [--json PATH]

Ours is what serving runs: ``LiteEmotionClassifier.predict_raw`` on ``models/emotion.tflite``
(one pass) and ``predict`` (the served call: the faces plus their mirror images). The
baseline, in the same process and interleaved, is Keras ``model(x, training=False)`` on the
same architecture (built from the net settings recorded in ``models/emotion.json``; weights do
not change the time), when TensorFlow is importable. Times are per call and per face.
TensorFlow's worker threads keep spinning briefly after each Keras call, so the interleaved
LiteRT figures are, if anything, pessimistic (alone, batch 8 takes ~1.6-2 ms per face here).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    RESULTS_DIR,
    interleaved,
    machine,
    quiet_tensorflow,
    ratio,
    summary,
    table,
    write_json,
)

BATCHES = (1, 8)


def keras_baseline(net: dict[str, Any]) -> tuple[Any, str | None]:
    """(the Keras model of the served architecture, None) or (None, why it is missing)."""
    quiet_tensorflow()
    try:
        from models.emotion_net import NetConfig, build_emotion_net

        config = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in net.items()})
        return build_emotion_net(config), None
    except Exception as exc:  # no TensorFlow/Keras here, or a settings mismatch
        return None, f"Keras baseline unavailable ({type(exc).__name__}: {exc})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--rounds", type=int, help="timed calls per case (default 200)")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "inference.json")
    args = parser.parse_args(argv)
    rounds = args.rounds or (20 if args.quick else 200)
    env = machine()

    from core.config import load_settings
    from models.emotion_runtime import LiteEmotionClassifier

    model_path = load_settings(env={}).models.emotion_path
    report = json.loads(model_path.with_suffix(".json").read_text())
    net = report.get("source", {}).get("settings", {}).get("net", {})
    # One interpreter per case: a change of batch size re-allocates the interpreter's tensors,
    # which interleaving two batch sizes on one interpreter would time on every call.
    lite = {b: LiteEmotionClassifier(model_path) for b in ("one", "served")}
    model, missing = keras_baseline(net)
    if missing:
        print(f"BASELINE MISSING: {missing}\n(timing LiteRT only)\n")

    rng = np.random.default_rng(0)
    rows, cases = [], []
    for batch in BATCHES:
        faces = rng.integers(0, 256, (batch, 48, 48), dtype=np.uint8)
        x = faces.astype(np.float32)[..., None] / 255.0
        candidates: dict[str, Any] = {
            "litert_one_pass": lambda x=x: lite["one"].predict_raw(x),
            "litert_served": lambda faces=faces: lite["served"].predict(faces),
        }
        if model is not None:
            candidates["keras_call"] = lambda x=x: model(x, training=False)
        times = interleaved(candidates, rounds, warmup=3)
        stats = {name: summary(values) for name, values in times.items()}
        for s in stats.values():
            s["per_face_median_ms"] = round(s["median_ms"] / batch, 4)
        case: dict[str, Any] = {"batch": batch, **stats}
        if model is not None:
            case["ratio_keras_vs_litert_one_pass"] = ratio(
                stats["keras_call"]["median_ms"], stats["litert_one_pass"]["median_ms"]
            )
        cases.append(case)
        for name, s in stats.items():
            rows.append(
                [
                    f"batch {batch}",
                    name,
                    s["median_ms"],
                    s["p90_ms"],
                    s["per_face_median_ms"],
                    ratio(stats["keras_call"]["median_ms"], s["median_ms"]) if model else None,
                ]
            )

    print(
        f"model: {model_path.name} ({model_path.stat().st_size // 1024} KiB, "
        f"{report.get('format', '?')}); served = each face in the model's test-time views, one call\n"
    )
    print(table(["batch", "runtime", "med ms", "p90 ms", "ms/face", "x vs keras"], rows))
    write_json(
        args.json,
        "inference",
        {
            "model": str(model_path.name),
            "format": report.get("format"),
            "net": net,
            "rounds": rounds,
            "order": "interleaved per call, alternating ABAB/BABA",
            "baseline": "Keras model(x, training=False), same architecture" if model else None,
            "baseline_missing": missing,
            "cases": cases,
        },
        env,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
