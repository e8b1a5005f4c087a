"""Export (Keras -> .tflite) and the eval command: LiteRT agrees with Keras on real faces.

This is the one test module that imports TensorFlow (~3 s); everything else serves on LiteRT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data.fer2013 import EMOTIONS, load_cached
from tests.conftest import REPO_ROOT

keras = pytest.importorskip("keras")

from models import evaluate_emotion, export_emotion  # noqa: E402
from models.emotion_net import NetConfig, build_emotion_net  # noqa: E402
from models.emotion_runtime import LiteEmotionClassifier  # noqa: E402
from models.emotion_views import AS_IS, View, from_json  # noqa: E402

# The served network's shape (runs/emotion/settings.json); random weights are enough to
# prove the conversion is exact, and keep the test free of any training run.
SERVED_NET = NetConfig(stem=(24,), blocks=(48, 96, 192, 384), middle=2, exit_width=512)


@pytest.fixture(scope="module")
def public_test(fer2013_csv: Path):
    return load_cached(fer2013_csv, {"PublicTest"}, REPO_ROOT / ".cache")


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    model = build_emotion_net(SERVED_NET)
    # Give batch norm real statistics so the outputs are not all alike.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(np.random.default_rng(0).normal(0, 0.1, mean.shape).astype("float32"))
            var.assign(np.random.default_rng(1).uniform(0.5, 1.5, var.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def tflite(keras_model: keras.Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "float32.tflite"
    path.write_bytes(export_emotion.convert(keras_model, quantize=False))
    return path


def test_litert_agrees_with_keras_on_500_public_test_faces(
    keras_model: keras.Model, tflite: Path, public_test
) -> None:
    pick = np.random.default_rng(500).choice(len(public_test), 500, replace=False)
    x = public_test.images[pick][..., None].astype("float32") / 255
    expected = np.asarray(keras_model(x, training=False))
    served = LiteEmotionClassifier(tflite, views=AS_IS).predict(public_test.images[pick])
    assert (served.argmax(1) == expected.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_the_batch_dimension_is_dynamic(tflite: Path) -> None:
    runtime = LiteEmotionClassifier(tflite, views=AS_IS)
    faces = np.random.default_rng(0).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(runtime.predict(faces)[3:4], runtime.predict(faces[3:4]), atol=1e-5)


def test_dynamic_range_quantisation_is_smaller(keras_model: keras.Model, tflite: Path) -> None:
    quantised = export_emotion.convert(keras_model, quantize=True)
    assert len(quantised) < tflite.stat().st_size / 2


def _small_csv(public_test, path: Path, n: int = 120) -> Path:
    rows = ["emotion,pixels,Usage"]
    for i in range(n):
        usage = "PublicTest" if i % 3 else "Training"
        pixels = " ".join(map(str, public_test.images[i].ravel()))
        rows.append(f"{public_test.labels[i]},{pixels},{usage}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_export_main_writes_model_and_metrics_then_eval_reads_them(
    keras_model: keras.Model, public_test, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = tmp_path / "run" / "best.keras"
    checkpoint.parent.mkdir()
    keras_model.save(checkpoint)
    (checkpoint.parent / "settings.json").write_text(json.dumps({"epochs": 1}))
    csv = _small_csv(public_test, tmp_path / "small.csv")
    out = tmp_path / "out" / "emotion.tflite"
    argv = ["--model", str(checkpoint), "--data", str(csv), "--out", str(out)]
    assert export_emotion.main([*argv, "--quantize", "never"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["n"] == 80 and report["format"] == "tflite float32"
    assert report["labels"] == list(EMOTIONS)
    assert report["candidates"]["float32"]["keras_top1_agreement"] >= 0.99
    assert report["source"]["settings"] == {"epochs": 1}
    assert "--quantize never" in report["command"] or report["command"].startswith("python -m")

    capsys.readouterr()
    args = ["--data", str(csv), "--usage", "PublicTest", "--model", str(out), "--json"]
    assert evaluate_emotion.main(args) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 80
    assert metrics["accuracy"] == pytest.approx(report["accuracy_served"])
    assert from_json(report["views"])[0] == View()  # the plain view always leads
    assert metrics["views"] == report["view_names"]

    assert evaluate_emotion.main(["--data", str(csv), "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "faces: 120" in text and "confusion matrix" in text and "happy" in text


def test_several_models_export_as_one_ensemble_averaging_their_probabilities(
    keras_model: keras.Model, public_test, tmp_path: Path
) -> None:
    keras.utils.set_random_seed(4)
    other = build_emotion_net(SERVED_NET)
    paths = [tmp_path / "a.keras", tmp_path / "b.keras"]
    keras_model.save(paths[0])
    other.save(paths[1])
    x = public_test.images[:32, ..., None].astype("float32") / 255
    expected = (np.asarray(keras_model(x)) + np.asarray(other(x))) / 2

    ensemble = export_emotion.load_served(paths)
    np.testing.assert_allclose(np.asarray(ensemble(x)), expected, atol=1e-6)
    assert export_emotion.load_served(paths[:1]).name == keras_model.name  # one model: as is

    csv = _small_csv(public_test, tmp_path / "small.csv", n=30)
    out = tmp_path / "out" / "emotion.tflite"
    argv = ["--model", *map(str, paths), "--data", str(csv), "--out", str(out)]
    assert export_emotion.main([*argv, "--quantize", "never"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [member["checkpoint"] for member in report["ensemble_of"]] == list(map(str, paths))
    assert len(report["views"]) <= 9  # two members: the 18 passes a face gets buy nine views
    served = LiteEmotionClassifier(out, views=AS_IS).predict(public_test.images[:32])
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_eval_reports_bad_input_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels\n9,1 2 3\n")
    assert evaluate_emotion.main(["--data", str(bad)]) == 2
    assert "bad.csv:2" in capsys.readouterr().err
    missing = ["--data", str(bad), "--model", str(tmp_path / "none.tflite")]
    assert evaluate_emotion.main(missing) == 2
