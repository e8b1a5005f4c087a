"""What every benchmark shares: the fixed photo set, timing statistics, the machine, the JSON.

The photos are real (scikit-image's sample images), JPEG-encoded at phone sizes. They are
built in memory each run from the same inputs, so every run times the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SIZES = (1280, 1920)  # long side in pixels: what phones send after chat-app compression
JPEG_QUALITY = 90
CONTENTION_NOTE = (
    "The machine is shared: a long model-training run (and possibly other jobs) competed for "
    "the CPU during this benchmark, so absolute times are inflated and noisy; compare the "
    "ratios against the baseline, which ran interleaved in the same process."
)
PAUSED_NOTE = (
    "The training run was paused (SIGSTOP) for this benchmark and resumed after it; other "
    "jobs on the shared machine (other developers' tests) may still have competed for the "
    "CPU: see competing_processes and the load averages."
)


# --- photos ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One test photo as a user would send it."""

    name: str
    side: int  # long side in pixels
    faces: int  # faces a person would count in it
    jpeg: bytes

    @property
    def label(self) -> str:
        return f"{self.name} {self.side}"


def _scaled(rgb: np.ndarray, side: int, seed: int) -> np.ndarray:
    """Scale so the long side is ``side``; mild sensor-like noise so JPEGs weigh what phones'
    do (an upscaled smooth image compresses, and so decodes, unrealistically fast)."""
    height, width = rgb.shape[:2]
    factor = side / max(height, width)
    size = (round(width * factor), round(height * factor))
    image = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
    noise = np.random.default_rng(seed).normal(0.0, 3.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def source_photos() -> dict[str, tuple[np.ndarray, int]]:
    """name -> (RGB image, faces in it): a portrait selfie, a group collage, a no-face photo."""
    from skimage import data

    from bench.faces_vs_haar import collage

    astronaut = data.astronaut()[:, 64:448]  # 3:4 portrait, her face in the upper middle
    group, placed = collage()
    return {
        "selfie": (astronaut, 1),
        "group": (group, len(placed)),
        "no-face": (data.coffee(), 0),
    }


def photo_set(sizes: Sequence[int] = SIZES) -> list[Photo]:
    """Every source photo at every size, as JPEG bytes (deterministic)."""
    photos = []
    for i, (name, (rgb, faces)) in enumerate(source_photos().items()):
        for side in sizes:
            photos.append(Photo(name, side, faces, _jpeg(_scaled(rgb, side, seed=i))))
    return photos


def selfie_jpeg(side: int = 1280) -> bytes:
    """The one-face portrait at ``side`` px, as the throughput benchmark's users send it."""
    rgb, _ = source_photos()["selfie"]
    return _jpeg(_scaled(rgb, side, seed=0))


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values_ms: Sequence[float]) -> dict[str, float]:
    """median, p90, p99, min and n of a list of milliseconds."""
    return {
        "median_ms": round(statistics.median(values_ms), 3) if values_ms else math.nan,
        "p90_ms": round(percentile(values_ms, 90), 3),
        "p99_ms": round(percentile(values_ms, 99), 3),
        "min_ms": round(min(values_ms), 3) if values_ms else math.nan,
        "n": len(values_ms),
    }


def time_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; (milliseconds, its result)."""
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def interleaved(
    candidates: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each candidate ``rounds`` times, alternating the order every round (ABAB, BABA),
    so slow phases of a noisy machine hit every candidate alike. Milliseconds per call."""
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(time_ms(candidates[name])[0])
    return times


def ratio(baseline_ms: float, ours_ms: float) -> float:
    """How many times faster ours is than the baseline."""
    return round(baseline_ms / ours_ms, 2) if ours_ms > 0 else math.inf


# --- the machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def competing_processes(min_cpu_seconds: float = 60.0) -> list[str]:
    """Other processes that have used a lot of CPU (e.g. a training run), short command lines;
    a stopped one (``kill -STOP``, state T) is marked paused: it competes for nothing."""
    found = []
    ticks = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            paused = fields[0] in ("T", "t")
            cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
            if cpu < min_cpu_seconds:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if cmd.strip():
            found.append(f"{cmd.strip()[:80]} (cpu {cpu:.0f} s{', paused' if paused else ''})")
    return found


def cpu_pressure() -> dict[str, float] | None:
    """Linux's CPU pressure: the share of time (%, over 10 s, 60 s, 300 s) in which some runnable
    task waited for a core. It sees short-lived competitors that competing_processes misses."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(item.split("=") for item in line.split()[1:])
    return {key: float(fields[key]) for key in ("avg10", "avg60", "avg300") if key in fields}


def machine() -> dict[str, Any]:
    """Where the figures came from, including what competed for the CPU."""
    competing = competing_processes()
    training = [c for c in competing if "train" in c]
    running = any(not c.endswith("paused)") for c in training)
    paused = any(c.endswith("paused)") for c in training)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "cpu_pressure_at_start": cpu_pressure(),
        "competing_processes": competing,
        "training_run_competing": running,
        "training_run_paused": paused,
        "note": PAUSED_NOTE if paused and not running else CONTENTION_NOTE,
    }


def write_json(path: Path, benchmark: str, payload: dict[str, Any], env: dict[str, Any]) -> None:
    """Write the results with the machine, the time and the load at the end."""
    env = {
        **env,
        "loadavg_at_end": list(os.getloadavg()),
        "cpu_pressure_at_end": cpu_pressure(),
        "competing_processes_at_end": competing_processes(),
    }
    document = {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": env,
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A small fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return "-" if value is None else str(value)


HAAR_HINT = (
    "OpenCV {version} has no CascadeClassifier (Haar cascades left the main wheels in OpenCV 5); "
    "install the bench extra, which pins 4.x: pip install -e '.[bench]' "
    "(or pip install 'opencv-python-headless>=4.8,<5')"
)


def haar_missing() -> str | None:
    """Why OpenCV's Haar cascades (our baselines' face detector) are unavailable, or None."""
    import cv2

    if hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "data"):
        return None
    return HAAR_HINT.format(version=cv2.__version__)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and LiteRT's C++ chatter off the table (set before importing them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
