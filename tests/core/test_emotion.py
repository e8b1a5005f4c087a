"""The served emotion classifier: LiteRT on the committed model, batches, flips, threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from core.emotion import AS_IS, EmotionClassifier, EmotionModelError, View
from data.fer2013 import load_cached
from models.emotion_views import from_json
from tests.conftest import REPO_ROOT

MODEL = REPO_ROOT / "models" / "emotion.tflite"


@pytest.fixture(scope="module")
def classifier() -> EmotionClassifier:
    return EmotionClassifier(MODEL)


@pytest.fixture(scope="module")
def public_test(fer2013_csv: Path):
    return load_cached(fer2013_csv, {"PublicTest"}, REPO_ROOT / ".cache")


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_probabilities_for_a_batch(classifier: EmotionClassifier) -> None:
    out = classifier.probabilities(faces(5))
    assert out.shape == (5, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-4)


def test_empty_batch(classifier: EmotionClassifier) -> None:
    assert classifier.probabilities(np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


def test_batch_sizes_do_not_change_answers(classifier: EmotionClassifier) -> None:
    batch = faces(7, seed=1)
    together = classifier.probabilities(batch)
    one_by_one = np.concatenate([classifier.probabilities(batch[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_uint8_and_float_inputs_agree(classifier: EmotionClassifier) -> None:
    batch = faces(3, seed=2)
    as_float = batch[..., None].astype(np.float32) / 255
    np.testing.assert_allclose(
        classifier.probabilities(batch), classifier.probabilities(as_float), atol=1e-6
    )


def test_served_answer_averages_the_recorded_views(classifier: EmotionClassifier) -> None:
    """The model's JSON names the views; the served answer is the mean of the plain passes."""
    recorded = from_json(json.loads(MODEL.with_suffix(".json").read_text())["views"])
    plain = EmotionClassifier(MODEL, views=AS_IS)
    batch = faces(4, seed=3)
    x = batch[..., None].astype(np.float32) / 255
    expected = np.mean([plain.probabilities(view.apply(x)) for view in recorded], axis=0)
    np.testing.assert_allclose(classifier.probabilities(batch), expected, atol=1e-5)


def test_a_mirrored_view_mirrors_the_face() -> None:
    x = faces(2, seed=4)[..., None].astype(np.float32) / 255
    np.testing.assert_array_equal(View(mirror=True).apply(x), x[:, :, ::-1])
    np.testing.assert_array_equal(View().apply(x), x)
    zoomed = View(scale=1.2).apply(x)
    assert zoomed.shape == x.shape and not np.allclose(zoomed, x)


def test_concurrent_threads_agree_with_one_thread(classifier: EmotionClassifier) -> None:
    """Each thread runs its own interpreter, resized to its own batch sizes as it goes."""
    batches = [faces(1 + i % 4, seed=10 + i) for i in range(16)]
    expected = [classifier.probabilities(b) for b in batches]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = classifier.probabilities(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, want in enumerate(expected):
        np.testing.assert_allclose(results[i], want, atol=1e-5)


def test_wrong_face_shape(classifier: EmotionClassifier) -> None:
    with pytest.raises(ValueError, match="48"):
        classifier.probabilities(np.zeros((2, 64, 64), np.uint8))


def test_missing_or_wrong_model_files(tmp_path: Path) -> None:
    with pytest.raises(EmotionModelError, match="export"):
        EmotionClassifier(tmp_path / "nothing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all" * 10)
    with pytest.raises(EmotionModelError):
        EmotionClassifier(junk)
    with pytest.raises(EmotionModelError, match="48"):
        EmotionClassifier(REPO_ROOT / "models" / "faces" / "face_detection_short_range.tflite")


def test_served_model_reads_fer2013_well_above_chance(
    classifier: EmotionClassifier, public_test
) -> None:
    """500 PublicTest faces through the served path; chance is 14 % (25 % always saying happy)."""
    recorded = json.loads(MODEL.with_suffix(".json").read_text())
    rng = np.random.default_rng(2013)
    pick = rng.choice(len(public_test), 500, replace=False)
    predicted = classifier.probabilities(public_test.images[pick]).argmax(axis=1)
    accuracy = float((predicted == public_test.labels[pick]).mean())
    # The floor follows the committed model (its own full-PublicTest figure, less sampling
    # noise of 500 faces), and never drops below 0.40.
    assert accuracy >= max(0.40, recorded["accuracy_served"] - 0.05), accuracy
