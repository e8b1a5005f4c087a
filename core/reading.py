"""From photo bytes to the emotion of every face in it: decode, detect, align, classify.

This is the CPU-heavy part of a request; :class:`core.service.MoodLifter` runs
:meth:`PhotoReader.read` in a worker thread. Everything it holds is built once and is safe to
share between threads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core.emotion import EMOTIONS, EmotionClassifier
from core.faces import CropSettings, DetectorSettings, FaceDetector, align_face
from core.images import ImageLimits, decode_image
from core.replies import FaceReading

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)


@dataclass
class PhotoReader:
    """Decode with limits, find faces (largest first), read each face's emotion."""

    detector: FaceDetector
    classifier: EmotionClassifier
    limits: ImageLimits = field(default_factory=ImageLimits)
    crop: CropSettings = field(default_factory=CropSettings)

    @classmethod
    def from_settings(cls, settings: Settings) -> PhotoReader:
        """Load the face and emotion models named in the settings (once, at start-up)."""
        limits = ImageLimits(
            max_bytes=settings.limits.max_image_bytes, max_pixels=settings.limits.max_pixels
        )
        detector = FaceDetector(DetectorSettings(), models_dir=settings.models.faces_dir)
        return cls(detector, EmotionClassifier(settings.models.emotion_path), limits)

    def read(self, data: bytes) -> list[FaceReading]:
        """Every face in the photo, largest first; [] when there is none.

        Raises :class:`core.images.ImageError` (with a user message) for unusable photos.
        """
        image = decode_image(data, self.limits)
        faces = self.detector.detect(image.rgb)
        if not faces:
            return []
        crops = np.stack([align_face(image.rgb, face, self.crop) for face in faces])
        readings = []
        for face, probabilities in zip(faces, self.classifier.probabilities(crops), strict=True):
            best = int(np.argmax(probabilities))
            readings.append(
                FaceReading(
                    box=image.to_original(face.box),
                    emotion=EMOTIONS[best],
                    confidence=float(probabilities[best]),
                    probabilities={
                        n: float(p) for n, p in zip(EMOTIONS, probabilities, strict=True)
                    },
                )
            )
        log.debug("%d face(s) in a %s photo", len(readings), image.format)
        return readings


def group_emotion(
    faces: list[FaceReading] | tuple[FaceReading, ...],
) -> tuple[str, dict[str, float]]:
    """One emotion for the photo: probabilities averaged with bigger faces weighing more.

    The person holding the phone is usually the biggest face, so weights are box areas.
    """
    if not faces:
        raise ValueError("no faces to combine")
    weights = np.array([max(1, f.box[2] * f.box[3]) for f in faces], dtype=np.float64)
    table = np.array([[f.probabilities[name] for name in EMOTIONS] for f in faces])
    mean = (table * weights[:, None]).sum(axis=0) / weights.sum()
    probabilities = {name: float(p) for name, p in zip(EMOTIONS, mean, strict=True)}
    return max(probabilities, key=probabilities.__getitem__), probabilities
