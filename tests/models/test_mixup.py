"""Mixup blends each face with another face of its batch, and its target in the same share."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from models.mixup import mix_batch  # noqa: E402


def _batch(count: int) -> tuple[object, object]:
    """Face i is filled with the value i and labelled i % 7, so a blend's pixel and target
    both tell its shares."""
    images = np.stack([np.full((48, 48, 1), i, np.float32) for i in range(count)])
    targets = tf.one_hot(np.arange(count) % 7, 7)
    return tf.constant(images), targets


def test_each_face_stays_the_larger_part_of_its_blend() -> None:
    images, targets = _batch(6)  # six classes, each face's partner of another class
    mixed_images, mixed_targets = mix_batch(images, targets, alpha=0.4, seed=3)
    mixed_targets = mixed_targets.numpy()
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(6):
        partner = 5 - i  # the face at the mirrored batch position
        own = mixed_targets[i, i]
        assert 0.5 - 1e-6 <= own <= 1.0
        assert mixed_targets[i, partner] == pytest.approx(1.0 - own, abs=1e-6)
        # The pixels are blended in the same share: value = own·i + (1 - own)·partner.
        pixel = float(mixed_images[i, 0, 0, 0])
        assert pixel == pytest.approx(own * i + (1.0 - own) * partner, abs=1e-4)


def test_shares_vary_from_face_to_face() -> None:
    images, targets = _batch(32)
    _, mixed_targets = mix_batch(images, targets, alpha=0.4, seed=3)
    own = np.max(mixed_targets.numpy(), axis=1)
    assert own.std() > 0.02  # drawn per face, not one share for the batch


def test_alpha_must_be_positive() -> None:
    images, targets = _batch(4)
    with pytest.raises(ValueError, match="alpha must be positive"):
        mix_batch(images, targets, alpha=0.0, seed=1)
