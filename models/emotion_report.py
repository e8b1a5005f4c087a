"""Score emotion predictions and write the run's report (metrics JSON and PNG plots)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data.fer2013 import EMOTIONS, FerSplit


def score(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, per-class recall and the confusion matrix (rows: truth, columns: prediction)."""
    predicted = probabilities.argmax(axis=1)
    n_classes = len(EMOTIONS)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    recall = np.divide(confusion.diagonal(), support, out=np.zeros(n_classes), where=support > 0)
    return {
        "n": int(labels.size),
        "accuracy": float((predicted == labels).mean()) if labels.size else 0.0,
        "per_class_recall": {
            name: round(float(r), 4) for name, r in zip(EMOTIONS, recall, strict=True)
        },
        "confusion_matrix": confusion.tolist(),
        "labels": list(EMOTIONS),
    }


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray], split: FerSplit, batch: int = 256
) -> dict:
    """Score ``predict`` (float faces (N,48,48,1) in [0,1] -> probabilities) with and without flips."""
    x = split.images[..., None].astype("float32") / 255.0
    plain = np.concatenate([predict(x[i : i + batch]) for i in range(0, len(x), batch)])
    flipped = np.concatenate([predict(x[i : i + batch, :, ::-1]) for i in range(0, len(x), batch)])
    metrics = score(split.labels, plain)
    metrics["accuracy_flip"] = score(split.labels, (plain + flipped) / 2)["accuracy"]
    return metrics


def evaluate_keras(model, split: FerSplit) -> dict:
    """:func:`evaluate` for a Keras model (graph-mode call, no per-call predict overhead)."""
    return evaluate(lambda x: np.asarray(model(x, training=False)), split)


def write_report(run_dir: Path, metrics: dict, history_csv: Path) -> None:
    """metrics.json, training_curves.png and confusion_matrix.png in ``run_dir``."""
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if history_csv.exists():
        with open(history_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            epochs = [int(r["epoch"]) + 1 for r in rows]
            fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
            for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
                ax.plot(epochs, [float(r[key]) for r in rows], label="Training")
                ax.plot(epochs, [float(r[f"val_{key}"]) for r in rows], label="PublicTest")
            averaged = [
                (epoch, float(r["val_averaged_accuracy"]))
                for epoch, r in zip(epochs, rows, strict=True)
                if r.get("val_averaged_accuracy")
            ]
            if averaged:
                ax_acc.plot(*zip(*averaged, strict=True), label="PublicTest, weight average")
            for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
                ax.set_xlabel("epoch")
                ax.set_title(key)
                ax.legend()
            fig.tight_layout()
            fig.savefig(run_dir / "training_curves.png", dpi=100)
            plt.close(fig)
    confusion = np.asarray(metrics["confusion_matrix"], dtype=float)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45)
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_title(f"PublicTest accuracy {metrics['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion_matrix.png", dpi=100)
    plt.close(fig)
