"""Find faces in a photo with MediaPipe's BlazeFace models on LiteRT, and crop them like FER2013.

Why BlazeFace and not OpenCV's Haar cascade: measured on the same photos it is 8-25x faster,
finds tilted and small faces, and returns no false faces on clothes and backgrounds where
Haar returns several (numbers in models/faces/NOTICE.md). The anchors, box decoding and
weighted non-maximum suppression follow MediaPipe's calculators; the model files are vendored
in ``models/faces/``. A :class:`FaceDetector` holds the models: build it once and share it;
each worker thread runs its own interpreters (a LiteRT interpreter is not thread-safe).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.errors import ModelFileError
from models.per_thread import PerThread

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models" / "faces"
SHORT_RANGE = "face_detection_short_range.tflite"
FULL_RANGE = "face_detection_full_range.tflite"
_Run = tuple[np.ndarray, np.ndarray]  # one pass: (N, 8, 2) corners + keypoints, (N,) scores
_RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps float32 exp() finite
_TILE_GRID = 3  # the small-face pass runs the full-range model on 3x3 overlapping tiles ...
_TILE_SHARE = 0.4  # ... each covering this share of the width and height ...
_TILE_VIEW_SIDE = 480  # ... of the photo shrunk to this: a tile of it is the full-range input
# The whole-photo passes of a photo that may need tiles see it at this size: libjpeg's 640 px
# decode (and a 1280 px photo) shrink to it by a whole factor, which cv2's area resampling does
# ~40x faster than to any other size (0.1 against 3.5 ms for 640 -> 192 px, measured).
_WHOLE_VIEW_SIDE = 320
Box = tuple[float, float, float, float]  # x, y, width, height


@dataclass(frozen=True)
class SsdOptions:
    """MediaPipe's SsdAnchorsCalculator options for one BlazeFace model."""

    input_size: int
    strides: tuple[int, ...]
    two_anchors_per_cell: bool  # interpolated_scale_aspect_ratio == 1.0


# mediapipe/modules/face_detection/face_detection_{short,full}_range_common.pbtxt
SHORT_OPTIONS = SsdOptions(128, (8, 16, 16, 16), True)
FULL_OPTIONS = SsdOptions(192, (4,), False)


@dataclass(frozen=True)
class Face:
    """A face in the searched image's pixels; eyes are the model's (subject's right, left).

    ``box`` is clipped to the image: it is what users are shown. ``full_box`` is the
    detector's own box, which reaches past the image's edges when the photo cuts the face off
    (a selfie's forehead or chin): it keeps the face's real centre and size, so the crop, the
    size limit and the largest-first order go by it (see :attr:`whole`).
    """

    box: Box  # within the image
    score: float
    right_eye: tuple[float, float]  # the subject's right eye: on the image's left when upright
    left_eye: tuple[float, float]
    full_box: Box | None = None  # None: the same as ``box`` (the face lies inside the image)

    @property
    def whole(self) -> Box:
        """The whole face's box, also where the photo cuts it off (then partly outside)."""
        return self.box if self.full_box is None else self.full_box

    @property
    def area(self) -> float:
        """The whole face's area: its size in the photo, not how much of it shows."""
        _, _, w, h = self.whole
        return w * h

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times as large (the photo decoded bigger)."""

        def scale(box: Box) -> Box:
            x, y, w, h = box
            return (x * factor, y * factor, w * factor, h * factor)

        return Face(
            box=scale(self.box),
            score=self.score,
            right_eye=(self.right_eye[0] * factor, self.right_eye[1] * factor),
            left_eye=(self.left_eye[0] * factor, self.left_eye[1] * factor),
            full_box=None if self.full_box is None else scale(self.full_box),
        )

    @property
    def roll(self) -> float:
        """Head roll in degrees (0 when the eyes are level; positive turns clockwise)."""
        dx = self.left_eye[0] - self.right_eye[0]
        dy = self.left_eye[1] - self.right_eye[1]
        return math.degrees(math.atan2(dy, dx))


CLOSE_UP_BORDER = 0.25  # share of the longest side added around a photo where no face was found
# A turned photo's face counts when both models see it at least this surely.
CONFIRMING_SCORE = 0.75
CLOSER_LOOK = 2.5  # side of the crop, in face boxes, on which the short-range model confirms


@dataclass(frozen=True)
class DetectorSettings:
    """Thresholds of the detector; defaults chosen by measurement (see models/faces/NOTICE.md)."""

    min_score: float = 0.65
    min_tile_score: float = 0.7  # tiles see small, blurry things: ask for more evidence
    iou_threshold: float = 0.3  # MediaPipe's min_suppression_threshold
    min_face: float = 16.0  # pixels; smaller faces carry too little to read an emotion
    # Share of a face that must lie inside the photo: a sliver at the edge is mostly padding.
    min_visible: float = 0.4
    max_faces: int = 20
    use_full_range: bool = True  # also run the full-range model, for small faces in groups
    tile_from: int = 640  # longest side from which the full-range model also runs on tiles
    dominant_face: float = 0.15  # ... unless a face this wide (share of the longest side) is found
    # A largest face rolled this far (degrees) lies sideways: search the photo turned upright.
    sideways_roll: float = 45.0


def generate_anchors(options: SsdOptions) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the order the model's outputs use."""
    centres: list[np.ndarray] = []
    strides = list(options.strides)
    i = 0
    while i < len(strides):
        j = i
        repeats = 0
        while j < len(strides) and strides[j] == strides[i]:
            repeats += 2 if options.two_anchors_per_cell else 1
            j += 1
        cells = options.input_size // strides[i]
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, repeats, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


class _Runner:
    """One LiteRT interpreter of a BlazeFace model with its input buffer: one thread's own."""

    def __init__(self, path: Path, options: SsdOptions) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.interpreter.allocate_tensors()
        source = self.interpreter.get_input_details()[0]
        if tuple(source["shape"][1:3]) != (options.input_size, options.input_size):
            raise ValueError(f"{path.name}: input {source['shape']} does not match {options}")
        self.input = source["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["shape"][-1])
        self.scores, self.regressors = outputs[0]["index"], outputs[1]["index"]
        self.tensor = np.empty((1, options.input_size, options.input_size, 3), dtype=np.float32)


class FaceModelError(ModelFileError):
    """A face-detection model file is missing or is not the BlazeFace model we expect."""


class BlazeFaceModel:
    """One BlazeFace .tflite on LiteRT: an RGB image in, scored boxes with keypoints out.

    Each thread that calls the model gets an interpreter of its own (~1 MB; see
    :mod:`models.per_thread`): the photo workers detect side by side.
    """

    def __init__(self, path: Path, options: SsdOptions) -> None:
        try:
            _Runner(path, options)  # a missing or broken file fails here, at start, not per photo
        except ValueError as exc:
            raise FaceModelError(f"{path}: not a usable face model ({exc})") from None
        self._runners = PerThread(lambda: _Runner(path, options))
        self._anchors = generate_anchors(options)
        self._size = options.input_size
        self.name = path.stem

    def __call__(self, rgb: np.ndarray, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Detections scoring at least ``min_score``: (N, 8, 2) box corners + 6 keypoints in
        pixels, and (N,) scores. Anchors are thresholded on their logits before any decoding
        (as MediaPipe's calculator does): a pass keeps a handful of its 896-2304 anchors."""
        height, width = rgb.shape[:2]
        scale = self._size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = (
            rgb
            if (new_w, new_h) == (width, height)
            else cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
        )
        runner = self._runners.get()
        tensor = runner.tensor
        tensor.fill(-1.0)  # black pad
        image = tensor[0, :new_h, :new_w]
        image[...] = resized
        image *= 2.0 / 255.0
        image -= 1.0
        runner.interpreter.set_tensor(runner.input, tensor)
        runner.interpreter.invoke()
        logits = runner.interpreter.get_tensor(runner.scores)[0, :, 0]
        keep = np.flatnonzero(logits >= _logit(min_score))
        raw = runner.interpreter.get_tensor(runner.regressors)[0, keep]
        logits = logits[keep]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        anchors = self._anchors[keep]
        points = raw.reshape(-1, 8, 2) / self._size
        points[:, 0] += anchors  # box centre
        points[:, 2:] += anchors[:, None, :]  # keypoints
        centre, half = points[:, 0].copy(), points[:, 1] / 2
        points[:, 0], points[:, 1] = centre - half, centre + half  # corners
        # Normalised to the padded square; one pixel of it is 1 / scale original pixels.
        return points * (self._size / scale), scores


def _logit(probability: float) -> float:
    """The raw score at which the sigmoid reaches ``probability`` (-inf for 0)."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))


def weighted_nms(
    points: np.ndarray, scores: np.ndarray, min_score: float, iou_threshold: float
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: overlapping boxes are averaged by score, not just dropped."""
    keep = scores >= min_score
    points, scores = points[keep], scores[keep]
    valid = np.all(points[:, 1] > points[:, 0], axis=1)
    points, scores = points[valid], scores[valid]
    order = np.argsort(-scores, kind="stable")
    points, scores = points[order], scores[order]
    results: list[tuple[np.ndarray, float]] = []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        overlap = _iou(points[top, :2], points[remaining, :2])
        group = remaining[overlap > iou_threshold]
        group = group if group.size else remaining[:1]
        weights = scores[group][:, None, None]
        merged = (points[group] * weights).sum(axis=0) / weights.sum()
        results.append((merged, float(scores[top])))
        remaining = remaining[overlap <= iou_threshold]
        remaining = remaining[remaining != top]
    return results


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (2, 2) corner box with (N, 2, 2) corner boxes."""
    low = np.maximum(box[0], boxes[:, 0])
    high = np.minimum(box[1], boxes[:, 1])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[1] - box[0])
    areas = np.prod(boxes[:, 1] - boxes[:, 0], axis=1)
    return inter / np.maximum(area + areas - inter, 1e-12)


class FaceDetector:
    """All faces in an RGB image, largest first. Build once (loads two small models)."""

    def __init__(
        self, settings: DetectorSettings = DetectorSettings(), models_dir: Path = MODELS_DIR
    ) -> None:
        self.settings = settings
        self._short = BlazeFaceModel(models_dir / SHORT_RANGE, SHORT_OPTIONS)
        self._full = (
            BlazeFaceModel(models_dir / FULL_RANGE, FULL_OPTIONS)
            if settings.use_full_range
            else None
        )

    def detect(self, rgb: np.ndarray, spare: Executor | None = None) -> list[Face]:
        """Faces in ``rgb`` ((H, W, 3) uint8), boxes in its pixels, largest first.

        ``spare``, the photo workers' pool, may take four of the small-face tiles (see
        :func:`_tiled`); the faces are the same either way. A photo without a sure upright
        face is also searched turned (see :meth:`_turned`).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        settings = self.settings
        height, width = rgb.shape[:2]
        tiles = self._full is not None and max(height, width) >= settings.tile_from
        if tiles:
            view = _shrunk(rgb, _WHOLE_VIEW_SIDE)
        else:
            view = _shrunk(rgb, (FULL_OPTIONS if self._full else SHORT_OPTIONS).input_size)
        runs = [_in_image(self._short(view, settings.min_score), view, width, height)]
        if self._full is not None:
            runs.append(_in_image(self._full(view, settings.min_score), view, width, height))
        faces = self._merge(runs, width, height)
        if tiles and not self._dominated(faces, width, height):
            assert self._full is not None
            tile_view = _shrunk(rgb, _TILE_VIEW_SIDE)
            found = _tiled(self._full, tile_view, settings.min_tile_score, spare)
            runs.extend(_in_image(run, tile_view, width, height) for run in found)
            faces = self._merge(runs, width, height)
        if not faces:
            faces = self._merge(
                [_in_image(self._close_up(view), view, width, height)], width, height
            )
        if self._may_lie(faces):
            faces = self._with_turned(view, width, height, faces)
        return faces

    def _may_lie(self, faces: list[Face]) -> bool:
        """Whether the photo may be turned: no face found upright, the largest one unsure
        (under :data:`CONFIRMING_SCORE`) or lying (rolled ``sideways_roll`` or more).

        A turned face is often found upright, weakly and with its eyes wrong: the camera man
        turned three quarters at 0.73 with his roll 64° off, the astronaut's head upside
        down at 0.68 as if upright; right faces of these photos score 0.81 or more.
        """
        return not _upright_sure(faces) or abs(faces[0].roll) >= self.settings.sideways_roll

    def _with_turned(
        self, view: np.ndarray, width: int, height: int, faces: list[Face]
    ) -> list[Face]:
        """``faces`` with what a turned search finds, decided face by face.

        A turned face is dropped where an upright face at least as sure, with its eyes near
        level, covers it (the upright reading was right); otherwise it replaces the upright
        faces it overlaps (the same head misread) and joins the others: a group photo whose
        largest face lies keeps everyone.
        """
        turned = self._turned(view, width, height, everywhere=not _upright_sure(faces))
        lying = self.settings.sideways_roll
        turned = [
            t
            for t in turned
            if not any(
                _overlapping(f, t) and abs(f.roll) < lying and f.score >= t.score for f in faces
            )
        ]
        if not turned:
            return faces
        kept = [face for face in faces if not any(_overlapping(face, t) for t in turned)]
        return sorted(turned + kept, key=lambda f: f.area, reverse=True)[: self.settings.max_faces]

    def _turned(self, view: np.ndarray, width: int, height: int, everywhere: bool) -> list[Face]:
        """Faces found with the photo given a quarter or half turn; [] when no turn finds one.

        BlazeFace finds upright faces: a photo saved sideways or upside down without an EXIF
        orientation gives no face, or a weak one with its eyes wrong (the astronaut turned
        90°: roll -66° instead of -81°). Turned upright, the face is found with its eyes where
        they are, and the crop turns it back as FER2013 shows faces. The view is searched as
        it is, then framed by a grey border as for close-ups (a face filling the photo is
        found only so). Each turn of each framing costs a short-range pass (~2 ms); the
        full-range model (~4 ms) runs on the whole turned view in the turns where the
        short-range one sees a face, and, ``everywhere`` (the upright search found no face
        it is sure of), in all three turns of the unframed view, for faces too small for the
        short-range model (a group photo's): ~25 ms more on a faceless photo. Three turns
        would triple the false faces on a faceless photo, so a turn counts only when both
        models see a face in it (see :meth:`_confirmed`); without the full-range model none
        is tried. The small-face tiles are not run turned: a sideways group photo has only
        its larger faces found.
        """
        if self._full is None:
            return []
        min_score = self.settings.min_score
        for framed, pad in (self._framed(view, 0.0), self._framed(view, CLOSE_UP_BORDER)):
            views = {turn: np.ascontiguousarray(np.rot90(framed, turn)) for turn in (1, 2, 3)}
            shorts = {turn: self._short(turned, min_score) for turn, turned in views.items()}
            surest = {turn: float(run[1].max(initial=0.0)) for turn, run in shorts.items()}
            # The turns where the cheaper model is surest are looked at first.
            order = sorted(views, key=lambda turn: -surest[turn])
            if pad or not everywhere:
                order = [turn for turn in order if surest[turn] >= CONFIRMING_SCORE]
            for turn in order:
                full = self._full(views[turn], min_score)
                if self._confirmed(views[turn], shorts[turn], full):
                    runs = [
                        _in_image(
                            _unframed(_turned_back(run, turn, framed), pad), view, width, height
                        )
                        for run in (shorts[turn], full)
                    ]
                    return self._merge(runs, width, height)
        return []

    def _confirmed(self, view: np.ndarray, short: _Run, full: _Run) -> bool:
        """Whether both models see one face in ``view`` at :data:`CONFIRMING_SCORE` or more:
        the passes' detections overlap, or the short-range model, shown the full-range one's
        surest face closer up (:data:`CLOSER_LOOK` times its box), sees it too.

        Measured on faceless photos (random crops of 19 scikit-image photos, each in four
        turns): 2.4 % of 912 views had a detection scoring 0.65; on coffee cups seen from
        above both models saw one at 0.65-0.70. Selfies are seen by both surely (the
        astronaut 0.92 / 0.94, the camera man 0.80 / 0.77); faces of a tenth of a group
        photo's width only by the full-range model until the closer look.
        """
        iou = self.settings.iou_threshold
        (short_points, short_scores), (full_points, full_scores) = short, full
        sure_full = full_scores >= CONFIRMING_SCORE
        if not np.any(sure_full):
            return False
        strong_full = full_points[sure_full]
        for box in short_points[short_scores >= CONFIRMING_SCORE]:
            if _iou(box[:2], strong_full[:, :2]).max() > iou:
                return True
        best = strong_full[int(np.argmax(full_scores[sure_full]))]
        (x0, y0), (x1, y1) = best[:2]
        half = CLOSER_LOOK * max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left, top = max(0, int(cx - half)), max(0, int(cy - half))
        right, bottom = min(view.shape[1], int(cx + half)), min(view.shape[0], int(cy + half))
        if right - left < 2 or bottom - top < 2:
            return False
        crop = np.ascontiguousarray(view[top:bottom, left:right])
        points, scores = self._short(crop, CONFIRMING_SCORE)
        if not len(scores):
            return False
        points = points + np.array([left, top], np.float32)
        return bool(_iou(best[:2], points[:, :2]).max() > iou)

    @staticmethod
    def _framed(view: np.ndarray, border: float) -> tuple[np.ndarray, int]:
        """The view framed by a grey border of ``border`` of its longest side, and the border's
        width in pixels."""
        if not border:
            return view, 0
        pad = round(border * max(view.shape[:2]))
        framed = cv2.copyMakeBorder(view, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128,) * 3)
        return framed, pad

    def _close_up(self, view: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The short-range pass on the view framed by a grey border, in the view's pixels.

        BlazeFace was trained on faces with some of the head around them: a close-up selfie
        cut at the forehead and chin (the face box 0.6-0.9x the photo) has none and is not
        found; with a border of a quarter of the photo it is (the astronaut and the camera
        man, scores 0.65-0.95, no false faces on 19 faceless scikit-image photos). Run only
        when nothing else was found: a photo without a face pays one more short-range pass.
        """
        framed, pad = self._framed(view, CLOSE_UP_BORDER)
        return _unframed(self._short(framed, self.settings.min_score), pad)

    def _dominated(self, faces: list[Face], width: int, height: int) -> bool:
        """Whether the photo is one big face's (a selfie): the tiles would add nothing that counts.

        The tiles only find faces the full-frame passes miss, below ~10 % of the longest side
        (measured: 115-130 px in a 1280 px photo). A face of ``dominant_face`` of that side is
        1.5x as wide and 2.25x the area of any of them, and the reading weighs faces by area.
        """
        share = self.settings.dominant_face
        return bool(faces) and faces[0].whole[2] >= share * max(width, height)

    def _merge(self, runs: list[_Run], width: int, height: int) -> list[Face]:
        """All passes' detections (in the image's pixels) merged into faces, largest first.

        Size and order go by the whole face (:attr:`Face.whole`): a face the photo cuts in half
        has as many pixels per eye and mouth as the whole face would, and is as near.
        """
        points = np.concatenate([p for p, _ in runs])
        scores = np.concatenate([s for _, s in runs])
        merged = weighted_nms(points, scores, 0.0, self.settings.iou_threshold)
        faces = [_to_face(p, s, width, height) for p, s in merged]
        min_face, min_visible = self.settings.min_face, self.settings.min_visible
        faces = [
            f
            for f in faces
            if min(f.whole[2], f.whole[3]) >= min_face
            and f.box[2] * f.box[3] >= min_visible * f.area
        ]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces[: self.settings.max_faces]


def _shrunk(rgb: np.ndarray, side: int) -> np.ndarray:
    """The image shrunk (once for all passes that share it) to ``side`` px on its longest side.

    A model sees at most its input size (192 px full range, 128 short range); each pass used to
    shrink the whole photo itself: six resizes of a 1280 px photo, ~40 % of the detector's time.
    """
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _upright_sure(faces: list[Face]) -> bool:
    """Whether the upright search found a face it is sure of (:data:`CONFIRMING_SCORE`)."""
    return bool(faces) and faces[0].score >= CONFIRMING_SCORE


def _unframed(run: _Run, pad: int) -> _Run:
    """A pass's detections on a view framed by ``pad`` pixels moved to the view's pixels."""
    points, scores = run
    return (points - np.float32(pad) if pad else points), scores


def _overlapping(face: Face, other: Face) -> bool:
    """Whether most of the smaller of two faces' boxes lies inside the other's."""
    ax, ay, aw, ah = face.whole
    bx, by, bw, bh = other.whole
    width = min(ax + aw, bx + bw) - max(ax, bx)
    height = min(ay + ah, by + bh) - max(ay, by)
    if width <= 0 or height <= 0:
        return False
    return width * height > 0.5 * min(aw * ah, bw * bh)


def _turned_back(run: _Run, turn: int, view: np.ndarray) -> _Run:
    """A pass's detections on ``np.rot90(view, turn)`` (quarter turns anticlockwise) moved to
    ``view``'s pixels; box corners re-sorted to top-left and bottom-right."""
    points, scores = run
    height, width = view.shape[:2]
    x, y = points[..., 0], points[..., 1]
    if turn == 1:
        x, y = width - y, x
    elif turn == 2:
        x, y = width - x, height - y
    elif turn == 3:
        x, y = y, height - x
    back = np.stack([x, y], axis=-1).astype(np.float32)
    corners = back[:, :2].copy()
    back[:, 0], back[:, 1] = corners.min(axis=1), corners.max(axis=1)
    return back, scores


def _in_image(run: _Run, view: np.ndarray, width: int, height: int) -> _Run:
    """A pass's detections moved from the pixels of the view it ran on to the image's."""
    points, scores = run
    return points * np.array([width / view.shape[1], height / view.shape[0]], np.float32), scores


def _tiled(
    model: BlazeFaceModel, rgb: np.ndarray, min_score: float, spare: Executor | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run ``model`` on 3x3 overlapping tiles: faces 2.5x narrower become findable.

    The full-range model finds faces down to ~8 % of its input's side, so on the whole photo
    ~8 %; on tiles of 0.4 of each side ~3.5 % (measured on a 2,600 px photo: faces of 3.5 / 4 /
    5 % of its width found 60 / 75 / 95 % of the time, against 5 / 10 / 70 % with the 2x2 tiles
    used before; no false face on 19 faceless photos at 1,600 px). Neighbouring tiles overlap by
    a tenth of the side, so a face up to that size lies whole in one of them; larger ones the
    whole-photo passes find. The tiles are most of the detector's time on a photo without a
    dominant face. With ``spare`` (the photo workers' pool) the last four are offered to another
    worker while this one runs the first five; a tile nobody has started by then runs here. An
    idle core nearly halves the tiles' time; a busy pool (its queue full of photos) costs a
    submit and a cancel per tile.
    """
    height, width = rgb.shape[:2]
    side_h, side_w = math.ceil(height * _TILE_SHARE), math.ceil(width * _TILE_SHARE)

    def run(x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
        points, scores = model(rgb[y : y + side_h, x : x + side_w], min_score)
        return points + np.array([x, y], dtype=np.float32), scores

    def starts(length: int, side: int) -> list[int]:
        return [round(i * (length - side) / (_TILE_GRID - 1)) for i in range(_TILE_GRID)]

    spots = [(x, y) for y in starts(height, side_h) for x in starts(width, side_w)]
    here = (len(spots) + 1) // 2
    offered = [_offer(spare, run, *spot) for spot in spots[here:]]
    runs = [run(*spot) for spot in spots[:here]]
    for future, spot in zip(offered, spots[here:], strict=True):
        runs.append(future.result() if future and not future.cancel() else run(*spot))
    return runs


def _offer(
    spare: Executor | None, fn: Callable[[int, int], _Run], x: int, y: int
) -> Future[_Run] | None:
    """``fn(x, y)`` submitted to ``spare``; None without one or when it takes no more work
    (shutting down: the bot finishes the photos in flight alone)."""
    if spare is None:
        return None
    try:
        return spare.submit(fn, x, y)
    except RuntimeError:
        return None


def _to_face(points: np.ndarray, score: float, width: int, height: int) -> Face:
    """A detection as a :class:`Face`: the box users see clipped to the image, the detector's
    kept as it is."""
    x0, y0, x1, y1 = (float(v) for v in points[:2].ravel())
    left, top = max(0.0, x0), max(0.0, y0)
    right, bottom = min(float(width), x1), min(float(height), y1)
    return Face(
        box=(left, top, max(0.0, right - left), max(0.0, bottom - top)),
        score=score,
        right_eye=(float(points[2, 0]), float(points[2, 1])),
        left_eye=(float(points[3, 0]), float(points[3, 1])),
        full_box=(x0, y0, x1 - x0, y1 - y0),
    )


@dataclass(frozen=True)
class CropSettings:
    """How FER2013 frames and lights a face, measured by running this detector on upscaled
    FER2013 faces.

    On 388 PublicTest faces the FER2013 frame was 1.18 (median; sd 0.23) detector-box widths
    wide and centred 0.07 box heights above the box centre; the eye distance varied 2.5x more
    (coefficient of variation 0.48 against 0.19), so the box, not the eyes, sets the scale.
    """

    size: int = 48
    side_per_box: float = 1.18
    centre_shift: float = -0.07  # in box heights along the face's own downward axis
    level_eyes: bool = True
    # Rolls below this are within the keypoints' noise (~±8° measured on rotated photos) and
    # within how FER2013's own faces vary (sd 14°), so small tilts are left as they are.
    min_roll: float = 10.0
    # FER2013's faces are lit alike: 99 % spread at least 107 grey levels between their 1st and
    # 99th percentiles, reach 126 or brighter and start at 85 or darker. A face well outside
    # that (a dark room, a flat photo) is stretched to the typical 25..231 first. On PublicTest
    # faces darkened to a quarter or at a tenth of their contrast the served model read 57.7 /
    # 31.6 %; evened out, 68.0 / 66.0 % (69.2 % as they are). Only faces far out are touched:
    # with looser bounds (spread 100, dark 140, pale 70) the 4 % of PublicTest's own faces they
    # caught, naturally dim or pale, lost 4.6 points; these catch 25 faces (0.7 %), no loss.
    min_spread: float = 80.0
    dark_below: float = 100.0  # 99th percentile under this: a dark face
    pale_above: float = 100.0  # 1st percentile over this: a washed-out face
    stretched_to: tuple[float, float] = (25.0, 231.0)
    # A photo that is already a face crop (a FER2013 face, a thumbnail cut around a face) is
    # read whole: re-framing it from the detector's box, whose FER2013 frame varies by ~20 %,
    # only adds noise. It counts as one when it is square within this ratio of its sides ...
    cropped_aspect: float = 1.15
    # ... and the face's FER2013 frame is this size of its shorter side (FER2013's own faces:
    # 0.74-1.26, 5th-95th percentile). Narrower than that below: FER2013 faces zoomed out to
    # 0.78 read worse whole than re-cropped (17 faces lost, 7 won of 600), at 0.85 and up as
    # well or better ...
    cropped_side: tuple[float, float] = (0.8, 1.3)
    # ... centred this close to it (share of the shorter side; 95 % of FER2013's: <= 0.15) ...
    cropped_offset: float = 0.15
    # ... and the head leans less than this: FER2013 leans like this (sd 14 degrees) and the
    # model learned to read it, but a steeper head reads better levelled.
    cropped_max_roll: float = 25.0


def even_out_exposure(face: np.ndarray, crop: CropSettings = CropSettings()) -> np.ndarray:
    """A (48, 48) uint8 face lit unlike FER2013's (dark, washed out, flat) stretched to their
    usual range; a face lit like them, or a blank patch, as it is."""
    low, high = (float(v) for v in np.percentile(face, (1, 99)))
    spread = high - low
    unusual = spread < crop.min_spread or high < crop.dark_below or low > crop.pale_above
    if spread <= 4 or not unusual:
        return face
    bottom, top = crop.stretched_to
    stretched = (face.astype(np.float32) - low) * ((top - bottom) / spread) + bottom
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


def _fer_frame(face: Face, crop: CropSettings) -> tuple[np.ndarray, float, float]:
    """Centre, side and turn (radians) of the square FER2013 would frame this face in."""
    x, y, w, h = face.whole
    level = crop.level_eyes and abs(face.roll) >= crop.min_roll
    angle = math.radians(face.roll) if level else 0.0
    down = np.array([-math.sin(angle), math.cos(angle)])
    centre = np.array([x + w / 2, y + h / 2]) + crop.centre_shift * h * down
    return centre, crop.side_per_box * max(w, h), angle


def is_cropped_already(shape: tuple[int, ...], face: Face, crop: CropSettings) -> bool:
    """Whether the photo itself is framed as FER2013 would frame its face (within the
    detector's own spread), so that reading it whole beats cropping it again."""
    height, width = shape[:2]
    short = min(height, width)
    if max(height, width) > crop.cropped_aspect * short or abs(face.roll) >= crop.cropped_max_roll:
        return False
    centre, side, _ = _fer_frame(face, crop)
    low, high = crop.cropped_side
    offset = math.hypot(centre[0] - width / 2, centre[1] - height / 2)
    return low <= side / short <= high and offset <= crop.cropped_offset * short


def align_face(image: np.ndarray, face: Face, crop: CropSettings = CropSettings()) -> np.ndarray:
    """The face as FER2013 shows one: eyes level, same framing and lighting, (size, size) uint8
    gray.

    Framed on the whole face (:attr:`Face.whole`), not the part inside the image: a clipped box
    slid the crop off the face in selfies cut off at the forehead or chin (17 % of the
    astronaut's face cut off at the top: correlation with the uncut crop 0.52 -> 0.80). What lies
    outside the image repeats its edge. A photo that already is such a crop
    (:func:`is_cropped_already`) is read whole, its central square as it is.
    """
    gray = image if image.ndim == 2 else None
    if is_cropped_already(image.shape, face, crop):
        height, width = image.shape[:2]
        # Pixel centres: the square's middle in index coordinates, so a 48 px face maps 1:1.
        centre, side, angle = np.array([(width - 1) / 2, (height - 1) / 2]), min(width, height), 0.0
    else:
        centre, side, angle = _fer_frame(face, crop)
    cos, sin = math.cos(angle), math.sin(angle)
    # Sample at the crop's own resolution (at most 4x the output), then area-average down.
    work = int(min(max(crop.size, round(side)), 4 * crop.size))
    step = side / work
    half = (work - 1) / 2
    # Inverse map: output pixel (u, v) -> source point, rotated by the head's roll.
    to_source = np.array(
        [
            [cos * step, -sin * step, centre[0] - (cos * half - sin * half) * step],
            [sin * step, cos * step, centre[1] - (sin * half + cos * half) * step],
        ]
    )
    source = gray if gray is not None else image
    flags = (cv2.INTER_LINEAR if work > side else cv2.INTER_CUBIC) | cv2.WARP_INVERSE_MAP
    patch = cv2.warpAffine(
        source, to_source, (work, work), flags=flags, borderMode=cv2.BORDER_REPLICATE
    )
    if patch.ndim == 3:
        patch = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)
    if work != crop.size:
        patch = cv2.resize(patch, (crop.size, crop.size), interpolation=cv2.INTER_AREA)
    return even_out_exposure(patch, crop)
