"""The training augmentation's random erasing: off by default, about half the faces at 1.0."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from models.emotion_net import build_augmenter


def _erased_share(erase: float) -> float:
    faces = np.full((256, 48, 48, 1), 0.5, np.float32)  # flips, turns and shifts keep it flat
    out = np.asarray(build_augmenter(seed=3, erase=erase)(faces, training=True))
    return float((np.abs(out - 0.5) > 0.02).reshape(len(faces), -1).any(axis=1).mean())


def test_no_erasing_unless_asked() -> None:
    assert _erased_share(0.0) == 0.0


def test_erasing_blanks_a_patch_in_about_half_the_faces() -> None:
    assert 0.35 < _erased_share(1.0) < 0.65
