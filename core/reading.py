"""From photo bytes to the emotion of every face in it: decode, detect, align, classify.

This is the CPU-heavy part of a request; :class:`core.service.MoodLifter` runs
:meth:`PhotoReader.read` in a worker thread. Everything it holds is built once and is safe to
share between threads.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core.emotion import EMOTIONS, MIRRORED, EmotionClassifier
from core.faces import CropSettings, DetectorSettings, Face, FaceDetector, align_face
from core.images import ImageLimits, decode_image
from core.replies import FaceReading

if TYPE_CHECKING:
    from core.config import Settings

log = logging.getLogger(__name__)

FINDING_SIDE = 640  # longest side at which a JPEG is first decoded to find its faces
# The largest faces of a photo are read in all of the model's test-time views (~22 ms a face);
# the others as-is and mirrored (~2 ms; ~1 point less accurate on FER2013), so a crowd of 20
# costs ~110 ms of emotion work instead of ~440. The group's emotion weighs faces by area, so
# it rests on the large ones, and the holder of the phone is usually the largest.
FULLY_READ_FACES = 4
_JPEG_MAGIC = b"\xff\xd8\xff"


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

    def _finding_limits(self, data: bytes) -> ImageLimits:
        """Limits for the first decode: a JPEG at :data:`FINDING_SIDE`, anything else as is.

        libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the work, and finding faces
        needs no more than that (the detector looks at 480 px); a face the full-frame passes
        find (>= ~10 % of the longest side) still has >= 64 px for its 48 px crop there. Other
        formats decode in full anyway, so they are decoded once, at working size.
        """
        if data[:3] != _JPEG_MAGIC or self.limits.working_side <= FINDING_SIDE:
            return self.limits
        return dataclasses.replace(self.limits, working_side=FINDING_SIDE)

    def _too_small_to_crop(self, faces: list[Face]) -> bool:
        """Whether a face's crop would be upscaled (fewer source pixels than crop pixels)."""
        smallest = min(max(face.whole[2], face.whole[3]) for face in faces)
        return smallest * self.crop.side_per_box < self.crop.size

    def read(self, data: bytes, spare: Executor | None = None) -> list[FaceReading]:
        """Every face in the photo, largest first; [] when there is none.

        ``spare``: the pool this runs in, which may take a share of the detector's work when
        a worker is idle (see :meth:`core.faces.FaceDetector.detect`).
        Raises :class:`core.images.ImageError` (with a user message) for unusable photos.
        """
        finding = self._finding_limits(data)
        image = decode_image(data, finding)
        faces = self.detector.detect(image.rgb, spare)
        if not faces:
            return []
        reduced = finding is not self.limits and max(image.original_size) > finding.working_side
        if reduced and self._too_small_to_crop(faces):
            # A small face (one only the detector's tiles find) needs the photo's own pixels.
            full = decode_image(data, self.limits)
            faces = [face.scaled(full.size[0] / image.size[0]) for face in faces]
            image = full
        crops = np.stack([align_face(image.rgb, face, self.crop) for face in faces])
        table = self.classifier.probabilities(crops[:FULLY_READ_FACES])
        if len(crops) > FULLY_READ_FACES:
            quick = self.classifier.probabilities(crops[FULLY_READ_FACES:], views=MIRRORED)
            table = np.concatenate([table, quick])
        readings = []
        for face, probabilities in zip(faces, table, strict=True):
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
