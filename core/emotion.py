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
from models.emotion_views import AS_IS, MIRRORED, View

__all__ = ["AS_IS", "EMOTIONS", "MIRRORED", "EmotionClassifier", "EmotionModelError", "View"]


class EmotionClassifier:
    """Probabilities over the seven FER2013 emotions, averaged over the model's test-time views."""

    def __init__(self, path: str | Path, *, views: Sequence[View] | None = None) -> None:
        self._runtime = LiteEmotionClassifier(path, views=views)

    def probabilities(self, faces: np.ndarray, views: Sequence[View] | None = None) -> np.ndarray:
        """(N, 48, 48) uint8 faces (as :func:`core.faces.align_face` makes) -> (N, 7) floats.

        One face (its test-time views) per pass of the model: an interpreter is sized for its
        batch, so a photo with another number of faces than the last one cost a resize (~1-3 ms)
        and the biggest batch it ever ran stayed in its memory for good (~16 MB more in every
        photo worker after a 4-face photo). Measured per face, a pass of 4 rows costs as much as
        a share of a bigger batch. ``views``: other views than the model's own (fewer, cheaper).
        """
        if len(faces) <= 1:
            return self._runtime.predict(faces, views)
        return np.concatenate([self._runtime.predict(face[None], views) for face in faces])
