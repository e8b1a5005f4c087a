"""Test-time views of a face: the served answer averages the model over a few of them.

A face read mirrored, a little closer or a little tilted is still the same face; averaging the
model's answers over such views corrects part of its errors for the price of a larger batch
(one interpreter call either way). Which views help depends on the trained weights, so the
export measures every candidate on PublicTest, keeps a greedy selection and records it in the
model's JSON; serving and ``moodlift eval emotion`` read it from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from data.fer2013 import FACE_SIZE


@dataclass(frozen=True)
class View:
    """One way of showing a face: mirrored or not, zoomed by ``scale``, turned by ``angle``°,
    then moved by ``shift`` (right, down) pixels."""

    mirror: bool = False
    scale: float = 1.0
    angle: float = 0.0
    shift: tuple[int, int] = (0, 0)

    @property
    def name(self) -> str:
        parts = ["mirror" if self.mirror else "as-is"]
        if self.scale != 1.0:
            parts.append(f"zoom {self.scale:g}")
        if self.angle:
            parts.append(f"turn {self.angle:+g}°")
        if self.shift != (0, 0):
            parts.append(f"shift {self.shift[0]:+d},{self.shift[1]:+d} px")
        return ", ".join(parts)

    def apply(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48, 1) float faces -> the same faces seen this way (borders reflected)."""
        out = faces[:, :, ::-1] if self.mirror else faces
        if self.scale == 1.0 and self.angle == 0.0 and self.shift == (0, 0):
            return np.ascontiguousarray(out)
        centre = ((FACE_SIZE - 1) / 2, (FACE_SIZE - 1) / 2)
        matrix = cv2.getRotationMatrix2D(centre, self.angle, self.scale)
        matrix[:, 2] += self.shift
        warped = [
            cv2.warpAffine(
                face[..., 0], matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_REFLECT
            )
            for face in out
        ]
        return np.stack(warped)[..., None] if warped else np.ascontiguousarray(out)


AS_IS = (View(),)
MIRRORED = (View(), View(mirror=True))  # what a model without recorded views is served with


def symmetric(scale: float, angle: float = 0.0) -> tuple[View, ...]:
    """A view together with its mirror image (and both turns), so no side of a face is favoured.

    Mirroring a face turned by ``angle`` is the same as turning the mirrored face by ``-angle``.
    """
    angles = (angle, -angle) if angle else (0.0,)
    return tuple(
        View(mirror, scale, a if not mirror else -a) for a in angles for mirror in (False, True)
    )


def shifted(radius: int) -> tuple[View, ...]:
    """The face moved ``radius`` pixels in each of the eight directions, each also mirrored:
    the classic multi-crop reading (with as-is and mirrored, a 3 x 3 grid of crops, 18 views)."""
    moves = [(dx, dy) for dy in (-radius, 0, radius) for dx in (-radius, 0, radius)]
    return tuple(
        View(mirror, shift=move) for move in moves if move != (0, 0) for mirror in (False, True)
    )


CANDIDATES = tuple(
    symmetric(scale, angle) for scale in (0.9, 1.0, 1.1, 1.2) for angle in (0.0, 8.0, 15.0)
) + tuple(shifted(radius) for radius in (1, 2, 3))  # :func:`choose` takes or leaves each whole


# Each view is one more face in the interpreter's batch, and the cost grows about linearly
# (~1 ms a view on the served model). A budget of 18 lets one shifted group in: on run B's
# epoch 57, 2-px shifts read PublicTest at 70.1 % against 69.2 % as-is and mirrored, and the
# export's choice made on one half of PublicTest and scored on the other (:func:`held_out`, 20
# random halvings both ways) still gained 0.7 points on 90 % of the halves. ~20 ms per face
# against ~3 in two views, where a chat reply waits far longer on the network.
MAX_SERVED_VIEWS = 18
# A group of views must earn its cost: half a point on PublicTest (18 of its 3,589 faces), more
# than the noise of choosing among 14 groups there (``symmetric(1.0)`` is as-is and mirrored).
# The 59 % model gained 1.6 points from zoomed views; once batch norm was re-estimated on clean
# faces (66.5 % mirrored), 0.3.
MIN_GAIN = 0.005


def render(faces: np.ndarray, views: Sequence[View]) -> np.ndarray:
    """All views of all faces in one batch, view after view: (len(views) * N, 48, 48, 1)."""
    return np.concatenate([view.apply(faces) for view in views])


def average(probabilities: np.ndarray, n_views: int) -> np.ndarray:
    """Undo :func:`render`'s stacking: the mean over views of each face's probabilities."""
    return probabilities.reshape(n_views, -1, probabilities.shape[-1]).mean(axis=0)


def choose(
    by_view: Mapping[View, np.ndarray],
    labels: np.ndarray,
    groups: Sequence[tuple[View, ...]] = CANDIDATES,
    max_views: int = MAX_SERVED_VIEWS,
    min_gain: float = MIN_GAIN,
) -> tuple[View, ...]:
    """Greedy forward selection from the face as-is and mirrored: add the group of views that
    raises accuracy most while one raises it by ``min_gain`` or more. ``by_view`` holds each
    view's probabilities on the same faces."""
    chosen = list(MIRRORED)
    best = _accuracy(_mean(by_view, chosen), labels)
    while True:
        gains = {
            group: _accuracy(_mean(by_view, [*chosen, *group]), labels)
            for group in groups
            if not set(group) & set(chosen) and len(chosen) + len(group) <= max_views
        }
        if not gains:
            break
        group, accuracy = max(gains.items(), key=lambda item: item[1])
        if accuracy < best + min_gain:
            break
        chosen.extend(group)
        best = accuracy
    return tuple(chosen)


@dataclass(frozen=True)
class HeldOut:
    """What :func:`choose` is worth on faces it did not choose on: its choice on one half of
    the faces scored on the other half, against as-is and mirrored there, over random halves."""

    accuracy: float  # mean over halves
    accuracy_std: float
    mirrored_accuracy: float  # as-is and mirrored on the same halves
    gain_share: float  # share of halves where the choice beat as-is and mirrored


def held_out(
    by_view: Mapping[View, np.ndarray],
    labels: np.ndarray,
    splits: int = 20,
    seed: int = 0,
    **choose_options: Any,
) -> HeldOut:
    """Score :func:`choose` honestly: the views are chosen on the faces they are scored on, so
    the served figure flatters them; here each of ``splits`` random halvings is used both ways."""
    rng = np.random.default_rng(seed)
    chosen_scores, mirrored_scores = [], []
    for _ in range(splits):
        order = rng.permutation(len(labels))
        halves = order[: len(order) // 2], order[len(order) // 2 :]
        for fit, score in (halves, halves[::-1]):
            fitted = {view: p[fit] for view, p in by_view.items()}
            views = choose(fitted, labels[fit], **choose_options)
            held = {view: p[score] for view, p in by_view.items()}
            chosen_scores.append(_accuracy(_mean(held, views), labels[score]))
            mirrored_scores.append(_accuracy(_mean(held, MIRRORED), labels[score]))
    chosen, mirrored = np.array(chosen_scores), np.array(mirrored_scores)
    return HeldOut(
        float(chosen.mean()),
        float(chosen.std()),
        float(mirrored.mean()),
        float((chosen > mirrored).mean()),
    )


def _mean(by_view: Mapping[View, np.ndarray], views: Sequence[View]) -> np.ndarray:
    return sum(by_view[view] for view in views) / len(views)


def to_json(views: Sequence[View]) -> list[dict]:
    return [asdict(view) for view in views]


def from_json(items: Sequence[Mapping]) -> tuple[View, ...]:
    """Views as :func:`to_json` wrote them; ValueError for a malformed one, so a bad file is
    refused when the model loads, not on a user's photo."""
    return tuple(
        View(bool(item["mirror"]), float(item["scale"]), float(item["angle"]), _shift(item))
        for item in items
    )


def _shift(item: Mapping) -> tuple[int, int]:
    shift = item.get("shift", (0, 0))  # exports from before shifts have none
    if not (
        isinstance(shift, list | tuple)
        and len(shift) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shift)
    ):
        raise ValueError(f"a view's shift must be two whole pixels, not {shift!r}")
    return shift[0], shift[1]


def _accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())
