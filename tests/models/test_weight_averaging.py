"""Weight averaging across epochs and batch-norm re-estimation on clean faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from models.weight_averaging import WeightAverage, recalibrate_batch_norm


def test_moving_average_of_weights_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "average.npz"
    first = [np.zeros((2, 3), np.float32), np.ones(3, np.float32)]
    second = [np.full((2, 3), 10, np.float32), np.full(3, 5, np.float32)]
    average = WeightAverage(path, decay=0.6)
    np.testing.assert_array_equal(average.update(first)[0], first[0])  # the first epoch starts it
    np.testing.assert_allclose(average.update(second)[0], 4.0)  # 0.6 * 0 + 0.4 * 10
    resumed = WeightAverage(path, decay=0.6)  # a later sitting
    third = [np.full((2, 3), 4, np.float32), np.full(3, 5, np.float32)]
    weights, bias = resumed.update(third)
    np.testing.assert_allclose(weights, 4.0)
    np.testing.assert_allclose(bias, 0.6 * (0.6 * 1 + 0.4 * 5) + 0.4 * 5)


def test_another_architecture_restarts_the_average(tmp_path: Path) -> None:
    average = WeightAverage(tmp_path / "average.npz", decay=0.5)
    average.update([np.ones(3, np.float32)])
    np.testing.assert_array_equal(average.update([np.full(4, 7, np.float32)])[0], 7)
    with pytest.raises(ValueError):
        WeightAverage(tmp_path / "other.npz", decay=1.0)


def test_batch_norm_statistics_become_those_of_the_given_faces() -> None:
    inputs = keras.Input((48, 48, 1))
    normed = keras.layers.BatchNormalization(momentum=0.99)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(normed))
    faces = np.random.default_rng(0).normal(0.7, 0.2, (1000, 48, 48, 1)).astype(np.float32)
    recalibrate_batch_norm(model, faces, batch_size=128)
    layer = model.layers[1]
    assert float(layer.moving_mean.numpy()[0]) == pytest.approx(faces.mean(), abs=1e-3)
    assert float(layer.moving_variance.numpy()[0]) == pytest.approx(faces.var(), rel=0.02)
    assert layer.momentum == 0.99  # restored
    # In inference the layer now centres these faces: their mean output is ~0.
    assert abs(float(np.asarray(model(faces, training=False)).mean())) < 0.01
