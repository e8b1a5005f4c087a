"""Read FER2013 faces: the Kaggle CSV (plain or gzip) and the common folder layout.

Both readers return a :class:`FerSplit` of 48x48 uint8 faces and integer labels, so the
training and evaluation code never cares which form the data came in.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FACE_SIZE = 48
PIXELS = FACE_SIZE * FACE_SIZE
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# Folder names seen in the usual copies of the folder layout ("train/angry/...").
_FOLDER_SPLITS = {"train": "Training", "training": "Training", "test": "PublicTest"}


class FerFormatError(ValueError):
    """A FER2013 file does not have the expected shape; the message names the place."""


@dataclass(frozen=True)
class FerSplit:
    """Faces (N, 48, 48) uint8 and labels (N,) int64 from one or more usages."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def counts(self) -> dict[str, int]:
        """Faces per emotion name, for reports."""
        found = np.bincount(self.labels, minlength=len(EMOTIONS))
        return {name: int(n) for name, n in zip(EMOTIONS, found, strict=True)}


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_csv_rows(path: Path) -> Iterator[tuple[int, np.ndarray, str]]:
    """Yield (label, 48x48 face, usage) per row, validating each with its line number."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise FerFormatError(f"{path}: the file is empty")
        columns = [name.strip().lower() for name in header]
        try:
            i_emotion, i_pixels = columns.index("emotion"), columns.index("pixels")
        except ValueError:
            raise FerFormatError(
                f"{path}:1: expected columns emotion,pixels[,Usage], found {','.join(header)}"
            ) from None
        i_usage = columns.index("usage") if "usage" in columns else None
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                label = int(row[i_emotion])
            except (ValueError, IndexError):
                raise FerFormatError(f"{path}:{line}: emotion is not an integer") from None
            if not 0 <= label < len(EMOTIONS):
                raise FerFormatError(f"{path}:{line}: emotion {label} is not in 0-6")
            try:
                face = np.array(row[i_pixels].split(), dtype=np.int32)
            except (ValueError, IndexError):
                raise FerFormatError(f"{path}:{line}: pixels are not integers") from None
            if face.size != PIXELS:
                raise FerFormatError(f"{path}:{line}: {face.size} pixels, expected {PIXELS}")
            if face.min() < 0 or face.max() > 255:
                raise FerFormatError(f"{path}:{line}: pixel values must be 0-255")
            usage = row[i_usage].strip() if i_usage is not None and i_usage < len(row) else ""
            yield label, face.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE), usage


def read_csv(path: str | os.PathLike[str], usages: set[str] | None = None) -> FerSplit:
    """Read a FER2013 CSV, keeping only rows whose Usage is in ``usages`` (all if None)."""
    faces: list[np.ndarray] = []
    labels: list[int] = []
    for label, face, usage in iter_csv_rows(Path(path)):
        if usages is None or usage in usages:
            faces.append(face)
            labels.append(label)
    return _split(faces, labels)


def read_folder(root: str | os.PathLike[str], usages: set[str] | None = None) -> FerSplit:
    """Read the folder layout ``train|test/<emotion>/*.jpg|png`` (test counts as PublicTest)."""
    from PIL import Image  # local: only this reader needs Pillow

    root = Path(root)
    faces: list[np.ndarray] = []
    labels: list[int] = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        usage = _FOLDER_SPLITS.get(split_dir.name.lower())
        if usage is None or (usages is not None and usage not in usages):
            continue
        for emotion_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            name = emotion_dir.name.lower()
            if name not in EMOTIONS:
                raise FerFormatError(f"{emotion_dir}: unknown emotion folder {name!r}")
            for file in sorted(emotion_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    with Image.open(file) as image:
                        gray = image.convert("L")
                        if gray.size != (FACE_SIZE, FACE_SIZE):
                            gray = gray.resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BICUBIC)
                        faces.append(np.asarray(gray, dtype=np.uint8))
                except OSError as exc:
                    raise FerFormatError(f"{file}: not a readable image ({exc})") from None
                labels.append(EMOTIONS.index(name))
    if not labels:
        raise FerFormatError(f"{root}: no faces found under train/ or test/<emotion>/")
    return _split(faces, labels)


def load(path: str | os.PathLike[str], usages: set[str] | None = None) -> FerSplit:
    """Read FER2013 from a CSV file (plain or .gz) or a folder, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path, usages)
    if not path.exists():
        raise FerFormatError(f"{path}: no such file or folder")
    return read_csv(path, usages)


def load_cached(
    path: str | os.PathLike[str], usages: set[str], cache_dir: str | os.PathLike[str]
) -> FerSplit:
    """Like :func:`load`, but keeps a parsed .npz beside other caches (parsing the CSV takes ~10 s)."""
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sorted(usages)}".encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir) / f"fer2013-{key}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            return FerSplit(stored["images"], stored["labels"])
    split = load(path, usages)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, images=split.images, labels=split.labels)
    tmp.replace(cache)
    return split


def _split(faces: list[np.ndarray], labels: list[int]) -> FerSplit:
    if not faces:
        return FerSplit(np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), np.zeros((0,), np.int64))
    return FerSplit(np.stack(faces), np.asarray(labels, dtype=np.int64))
