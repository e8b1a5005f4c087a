"""Compare our BlazeFace detector with OpenCV's Haar cascade on the same real photos.

One command: ``python -m bench.faces_vs_haar``. Prints, per photo, faces found, expected, and
median milliseconds; no-face photos count every detection as a false face.
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
from skimage import data

from bench.common import haar_missing
from core.faces import DetectorSettings, FaceDetector


def astronaut_head() -> np.ndarray:
    """Her head and shoulders with some background, as a selfie would frame it."""
    return data.astronaut()[20:300, 110:350]


def collage(sizes: tuple[int, ...] = (420, 260, 160, 100)) -> tuple[np.ndarray, list[tuple]]:
    """Copies of a real face at several sizes on a real background; returns expected boxes."""
    canvas = cv2.resize(data.coffee(), (1280, 900), interpolation=cv2.INTER_LINEAR)
    head = astronaut_head()
    x = 20
    placed = []
    for i, height in enumerate(sizes):
        width = round(head.shape[1] * height / head.shape[0])
        tile = cv2.resize(head, (width, height), interpolation=cv2.INTER_AREA)
        if i % 2:
            tile = tile[:, ::-1]
        y = 60 + (i * 97) % 300
        canvas[y : y + height, x : x + width] = tile
        placed.append((x, y, width, height))
        x += width + 30
    return canvas, placed


def photos() -> dict[str, tuple[np.ndarray, int]]:
    """name -> (RGB photo, how many faces it has)."""
    rng = np.random.default_rng(0)
    ast = data.astronaut()
    big = cv2.resize(ast, (1280, 1280), interpolation=cv2.INTER_CUBIC)
    center = (256, 256)
    tilted = cv2.warpAffine(ast, cv2.getRotationMatrix2D(center, 30, 1.0), (512, 512))
    out = {
        "astronaut 512": (ast, 1),
        "astronaut 1280": (big, 1),
        "astronaut tilted 30": (tilted, 1),
        "astronaut gray": (
            cv2.cvtColor(cv2.cvtColor(ast, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
            1,
        ),
        # Saved turned by an app that dropped the EXIF orientation: nothing to undo.
        "astronaut upside down": (np.ascontiguousarray(ast[::-1, ::-1]), 1),
        "camera sideways": (
            cv2.cvtColor(np.ascontiguousarray(np.rot90(data.camera())), cv2.COLOR_GRAY2RGB),
            1,
        ),
        "collage 4 faces 65-175px": (collage((480, 360, 270, 200))[0], 4),
        "collage 4 faces 36-150px": (collage()[0], 4),
        "chelsea (cat)": (data.chelsea(), 0),
        "coffee": (data.coffee(), 0),
        "rocket": (data.rocket(), 0),
        "motorcycle": (data.stereo_motorcycle()[0], 0),
        "hubble": (data.hubble_deep_field(), 0),
        "immunohistochemistry": (data.immunohistochemistry(), 0),
        "retina": (data.retina(), 0),
        "noise 1280": (rng.integers(0, 256, (960, 1280, 3), dtype=np.uint8), 0),
        "white": (np.full((720, 1280, 3), 255, np.uint8), 0),
        "black": (np.zeros((720, 1280, 3), np.uint8), 0),
    }
    for name in ("brick", "grass", "gravel", "coins", "page", "text", "horse", "camera", "moon"):
        gray = getattr(data, name)()
        gray = gray if gray.dtype == np.uint8 else (gray * 255).astype(np.uint8)
        out[name] = (cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), 1 if name == "camera" else 0)
    return out


def timed(fn, image, repeats: int = 7) -> tuple[int, float]:
    found = fn(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(image)
        times.append((time.perf_counter() - start) * 1000)
    return len(found), statistics.median(times)


def main() -> None:
    blaze = FaceDetector()
    always_tiles = FaceDetector(DetectorSettings(dominant_face=1.0))
    short_only = FaceDetector(DetectorSettings(use_full_range=False))
    detectors = {
        "blaze short+full": blaze.detect,
        "blaze tiles always": always_tiles.detect,  # no early exit for a dominant face
        "blaze short": short_only.detect,
    }
    no_haar = haar_missing()
    if no_haar is None:
        cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        )

        def haar(rgb: np.ndarray, side: int | None = None) -> list:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if side and max(gray.shape) > side:
                f = side / max(gray.shape)
                gray = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            return list(cascade.detectMultiScale(gray, 1.1, 5, minSize=(24, 24)))

        detectors["haar full-res"] = haar
        detectors["haar 640"] = lambda im: haar(im, 640)
    else:
        print(f"BASELINE MISSING: {no_haar}\n(timing BlazeFace only)\n")
    print(f"{'photo':24}{'faces':>6}" + "".join(f"{k:>20}" for k in detectors))
    totals = {k: [0, 0, 0.0] for k in detectors}  # missed, false, ms
    for name, (image, expected) in photos().items():
        row = f"{name:24}{expected:>6}"
        for key, fn in detectors.items():
            found, ms = timed(fn, image)
            totals[key][0] += max(0, expected - found)
            totals[key][1] += max(0, found - expected)
            totals[key][2] += ms
            row += f"{found:>9} {ms:7.1f} ms"
        print(row)
    print(
        "missed / extra / total ms: "
        + "  ".join(f"{k}: {m}/{f}/{t:.0f}" for k, (m, f, t) in totals.items())
    )


if __name__ == "__main__":
    main()
