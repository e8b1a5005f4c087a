"""Soft targets: the teachers' mean reading of each face, mixed with its true label."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.distillation import mix_targets, teacher_probabilities


def test_mixing_weighs_the_teacher_against_the_label() -> None:
    one_hot = np.eye(7, dtype=np.float32)[[3, 4]]
    teacher = np.full((2, 7), 1 / 7, dtype=np.float32)
    np.testing.assert_allclose(mix_targets(one_hot, teacher, 0.0), one_hot)
    np.testing.assert_allclose(mix_targets(one_hot, teacher, 1.0), teacher)
    mixed = mix_targets(one_hot, teacher, 0.25)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    assert mixed[0, 3] == pytest.approx(0.75 + 0.25 / 7)
    assert mixed[0, 4] == pytest.approx(0.25 / 7)


def test_mixing_refuses_a_bad_weight_or_shape() -> None:
    one_hot = np.eye(7, dtype=np.float32)[[3]]
    with pytest.raises(ValueError, match="within"):
        mix_targets(one_hot, one_hot, 1.5)
    with pytest.raises(ValueError, match="shape"):
        mix_targets(one_hot, np.eye(7, dtype=np.float32)[[3, 4]], 0.5)


def test_teachers_read_each_face_as_is_and_mirrored(tmp_path: Path) -> None:
    """The mean over both teachers and both readings, checked against the nets called directly."""
    keras = pytest.importorskip("keras")
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input((48, 48, 1)),
                keras.layers.Conv2D(4, 5, strides=4, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(7, activation="softmax"),
            ]
        )
        paths.append(tmp_path / f"teacher_{seed}.keras")
        model.save(paths[-1])
    # Faces that are not mirror images of themselves, so a missing mirror pass would show.
    x = np.random.default_rng(0).random((5, 48, 48, 1)).astype(np.float32)
    x[:, :, :24] *= 0.2
    got = teacher_probabilities(paths, x, batch=2)
    nets = [keras.models.load_model(path) for path in paths]
    expected = sum(np.asarray(net(faces)) for net in nets for faces in (x, x[:, :, ::-1])) / 4
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    plain = sum(np.asarray(net(x)) for net in nets) / 2
    assert not np.allclose(got, plain, atol=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        teacher_probabilities([], x)


def test_teachers_answers_are_kept_for_the_next_sitting(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7, "softmax")]
    )
    path = tmp_path / "teacher.keras"
    model.save(path)
    x = np.random.default_rng(1).random((4, 48, 48, 1)).astype(np.float32)
    cache = tmp_path / "cache"
    first = teacher_probabilities([path], x, cache_dir=cache)
    kept = list(cache.glob("teachers-*.npy"))
    assert len(kept) == 1
    np.testing.assert_array_equal(teacher_probabilities([path], x, cache_dir=cache), first)
    # Other faces (or another teacher) are another entry, never the kept answer.
    other = teacher_probabilities([path], x[:2], cache_dir=cache)
    assert other.shape == (2, 7) and len(list(cache.glob("teachers-*.npy"))) == 2
