"""Soft training targets from trained nets (knowledge distillation).

An ensemble of our runs reads PublicTest better than any one of them, but serving it costs a
pass of every member per view. Training one net towards the ensemble's probabilities on the
Training faces (mixed with the true labels) passes on what the ensemble knows — which wrong
answers are near misses — at the cost of one net. The teachers read each clean face as-is and
mirrored, the way the service reads faces; the student sees the same targets for every
augmented version of the face.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models import emotion_views

log = logging.getLogger(__name__)


def teacher_probabilities(
    teachers: Sequence[str | Path],
    x: np.ndarray,
    batch: int = 512,
    cache_dir: Path | None = None,
) -> np.ndarray:
    """Mean over ``teachers`` (.keras files) and over as-is + mirrored of each face's
    probabilities: (N, 48, 48, 1) float faces in [0, 1] -> (N, classes).

    Reading all of Training takes minutes on two cores, so with ``cache_dir`` the answer is kept
    there under a digest of the teachers' files and the faces, for the run's next sitting.
    """
    if not teachers:
        raise ValueError("distillation needs at least one teacher model")
    cache = _cache_path(teachers, x, cache_dir) if cache_dir is not None else None
    if cache is not None and cache.exists():
        return np.load(cache)
    probabilities = _read(teachers, x, batch)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, probabilities)
    return probabilities


def _cache_path(teachers: Sequence[str | Path], x: np.ndarray, cache_dir: Path) -> Path:
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    for path in teachers:
        digest.update(Path(path).read_bytes())
    return cache_dir / f"teachers-{digest.hexdigest()[:16]}.npy"


def _read(teachers: Sequence[str | Path], x: np.ndarray, batch: int) -> np.ndarray:
    import keras

    total: np.ndarray | None = None
    for path in teachers:
        model = keras.models.load_model(path, compile=False)
        for view in emotion_views.MIRRORED:
            probabilities = model.predict(view.apply(x), batch_size=batch, verbose=0)
            total = probabilities if total is None else total + probabilities
        log.info("teacher %s read %d faces", path, len(x))
    assert total is not None
    return (total / (len(emotion_views.MIRRORED) * len(teachers))).astype(np.float32)


def mix_targets(one_hot: np.ndarray, teacher: np.ndarray, weight: float) -> np.ndarray:
    """``weight`` of the teachers' probabilities, the rest the true label (rows sum to 1)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"teacher weight must be within [0, 1], not {weight}")
    if one_hot.shape != teacher.shape:
        raise ValueError(f"labels {one_hot.shape} and teacher {teacher.shape} differ in shape")
    return ((1.0 - weight) * one_hot + weight * teacher).astype(np.float32)
