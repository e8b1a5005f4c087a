"""The emotion in 48x48 gray faces, from the exported model on LiteRT (no TensorFlow at serve time).

The runtime itself lives in :mod:`models.emotion_runtime` so that the evaluation command
measures exactly what is served. Build one :class:`EmotionClassifier` at start-up and share it:
each worker thread that calls it runs its own interpreter.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.fer2013 import EMOTIONS
from models.emotion_runtime import EmotionModelError, LiteEmotionClassifier
from models.emotion_views import AS_IS, View

__all__ = ["AS_IS", "EMOTIONS", "EmotionClassifier", "EmotionModelError", "View"]

MAX_ROWS = 16
"""Rows per pass of the model (faces x test-time views): ~10 MB of interpreter memory. The 20
faces a photo may have, in one pass, kept ~50 MB more in each worker with two views (LiteRT
never gives it back), twice that with four."""


class EmotionClassifier:
    """Probabilities over the seven FER2013 emotions, averaged over the model's test-time views."""

    def __init__(self, path: str | Path, *, views: Sequence[View] | None = None) -> None:
        self._runtime = LiteEmotionClassifier(path, views=views)

    @property
    def path(self) -> Path:
        return self._runtime.path

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 faces (as :func:`core.faces.align_face` makes) -> (N, 7) floats.

        At most :data:`MAX_ROWS` rows go through the model at once: an interpreter keeps the
        memory of the biggest batch it ever ran, in every photo worker, for good.
        """
        chunk = max(1, MAX_ROWS // len(self._runtime.views))
        if len(faces) <= chunk:
            return self._runtime.predict(faces)
        return np.concatenate(
            [
                self._runtime.predict(faces[start : start + chunk])
                for start in range(0, len(faces), chunk)
            ]
        )

    def classify(self, faces: np.ndarray) -> list[dict[str, float]]:
        """One {emotion: probability} dict per face, in :data:`EMOTIONS` order."""
        return [
            {name: float(p) for name, p in zip(EMOTIONS, row, strict=True)}
            for row in self.probabilities(faces)
        ]
