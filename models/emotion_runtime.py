"""Run the exported emotion model (.tflite) on LiteRT: the serving path, without TensorFlow.

LiteRT imports in ~0.1 s and ~45 MB where TensorFlow takes ~3 s and ~800 MB, and answers a face
in well under a millisecond. Both the service (via :mod:`core.emotion`) and the evaluation
command use this one class, so the accuracy we report is the accuracy we serve.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data.fer2013 import EMOTIONS, FACE_SIZE
from models import emotion_views
from models.emotion_views import View
from models.errors import ModelFileError
from models.per_thread import PerThread

log = logging.getLogger(__name__)


class EmotionModelError(ModelFileError):
    """The model file is missing or is not the 48x48x1 -> 7 classifier we expect."""


class _Runner:
    """One LiteRT interpreter of the emotion model, sized for the last batch: one thread's own."""

    def __init__(self, path: Path, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        except ValueError as exc:
            raise EmotionModelError(f"{path}: not a LiteRT model ({exc})") from None
        source = self.interpreter.get_input_details()[0]
        target = self.interpreter.get_output_details()[0]
        if tuple(source["shape"][1:]) != (FACE_SIZE, FACE_SIZE, 1) or target["shape"][-1] != len(
            EMOTIONS
        ):
            raise EmotionModelError(
                f"{path}: expects {source['shape']} -> {target['shape']}, "
                f"not (N, {FACE_SIZE}, {FACE_SIZE}, 1) -> (N, {len(EMOTIONS)})"
            )
        self.input, self.output = source["index"], target["index"]
        self.batch = 0

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input, list(x.shape), strict=False)
            self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(x, dtype=np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class LiteEmotionClassifier:
    """Probabilities over :data:`data.fer2013.EMOTIONS` for batches of 48x48 gray faces.

    Load once and share: each calling thread runs its own interpreter (see
    :mod:`models.per_thread`), so the photo workers classify side by side, not in turn.
    Each face is read in a few test-time views (:mod:`models.emotion_views`) in one batch and
    the answers averaged: by default the views the export chose and recorded in the model's
    JSON (as-is and mirrored if it records none); ``views=AS_IS`` for a single plain pass.
    """

    def __init__(
        self, path: str | Path, *, views: Sequence[View] | None = None, num_threads: int = 1
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EmotionModelError(f"{self.path}: no emotion model here; export one first")
        model = self.path
        _Runner(model, num_threads)  # a broken file fails here, at start, not on the first face
        self._runners = PerThread(lambda: _Runner(model, num_threads))
        self.views = tuple(views) if views is not None else served_views(self.path)

    def predict(self, faces: np.ndarray, views: Sequence[View] | None = None) -> np.ndarray:
        """(N, 48, 48[, 1]) faces, uint8 0-255 or float 0-1 -> (N, 7) float32 probabilities.

        ``views``: read in these instead of the classifier's own (a cheaper reading).
        """
        views = self.views if views is None else tuple(views)
        x = _as_input(faces)
        if len(x) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        if views == emotion_views.AS_IS:
            return self.predict_raw(x)
        every_view = self.predict_raw(emotion_views.render(x, views))
        return emotion_views.average(every_view, len(views))

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """One pass of the model on float32 (N, 48, 48, 1) input in [0, 1]; no other views."""
        return self._runners.get().run(x)


def served_views(model: Path) -> tuple[View, ...]:
    """The test-time views recorded beside ``model`` by the export (``<model>.json``)."""
    try:
        recorded = json.loads(model.with_suffix(".json").read_text()).get("views")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not recorded:
        return emotion_views.MIRRORED
    try:
        return emotion_views.from_json(recorded)
    except (KeyError, TypeError, ValueError) as exc:
        raise EmotionModelError(f"{model.with_suffix('.json')}: unreadable views ({exc})") from None


def _as_input(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[..., None]
    if faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 1):
        raise ValueError(f"expected (N, {FACE_SIZE}, {FACE_SIZE}[, 1]) faces, got {faces.shape}")
    if faces.dtype == np.uint8:
        return faces.astype(np.float32) / 255.0
    return faces.astype(np.float32, copy=False)
