"""The training command on a tiny net and tiny data: it trains, reports, and resumes."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from models.train_emotion import TrainSettings, main, save_checkpoint, train

# Not narrower: TensorFlow 2.21's oneDNN kernels corrupt the heap ("double free", abort) when
# training separable convolutions of 4-8 channels on AVX-512 machines; 16+ channels train fine.
TINY_NET = {"stem": (16,), "blocks": (32,), "middle": 0, "exit_width": 16}


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    """40 training and 14 validation faces: bright faces are 'happy', dark ones 'sad'."""
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage, n in (("Training", 40), ("PublicTest", 14)):
        for i in range(n):
            label = 3 if i % 2 else 4
            base = 190 if label == 3 else 50
            face = np.clip(base + rng.normal(0, 20, 48 * 48), 0, 255).astype(int)
            lines.append(f"{label},{' '.join(map(str, face))},{usage}")
    path = tmp_path / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trains_reports_and_resumes(tmp_path: Path, tiny_csv: Path) -> None:
    run = tmp_path / "run"
    settings = TrainSettings(
        data=str(tiny_csv), run_dir=str(run), epochs=1, batch_size=16, net=dict(TINY_NET)
    )
    metrics = train(settings)
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    for name in ("best.keras", "last.keras", "average.npz", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    # The kept model carries no optimizer slots (Adam's two per weight live in last.keras only).
    saved = {
        name: h5py.File(io.BytesIO(zipfile.ZipFile(run / name).read("model.weights.h5")), "r")
        for name in ("best.keras", "last.keras")
    }
    assert "optimizer" in saved["last.keras"] and "optimizer" not in saved["best.keras"]
    state = json.loads((run / "state.json").read_text())
    assert state["monitor"] == "val_averaged_accuracy"
    assert "val_averaged_accuracy" in (run / "history.csv").read_text().splitlines()[0]
    assert (run / "training_curves.png").stat().st_size > 1000
    assert (run / "confusion_matrix.png").stat().st_size > 1000
    assert metrics["n"] == 14
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert np.asarray(metrics["confusion_matrix"]).sum() == 14

    # A second sitting continues where the first stopped.
    train(replace(settings, epochs=2))
    assert json.loads((run / "state.json").read_text())["epoch"] == 2
    assert len((run / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs

    # A committed checkpoint seeds a fresh run folder, which then goes on from epoch 2 — also
    # one written before weight averaging (no average.npz, bests of the raw model, a history
    # without the averaged column).
    checkpoint = tmp_path / "checkpoint"
    save_checkpoint(run, checkpoint)
    (checkpoint / "average.npz").unlink()
    old_state = json.loads((checkpoint / "state.json").read_text())
    del old_state["monitor"]
    (checkpoint / "state.json").write_text(json.dumps(old_state))
    with open(checkpoint / "history.csv", newline="") as handle:
        old_rows = [
            {k: v for k, v in row.items() if k != "val_averaged_accuracy"}
            for row in csv.DictReader(handle)
        ]
    with open(checkpoint / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(old_rows[0]))
        writer.writeheader()
        writer.writerows(old_rows)
    fresh = tmp_path / "fresh"
    argv = ["--data", str(tiny_csv), "--run-dir", str(fresh), "--epochs", "3"]
    argv += ["--batch-size", "16", "--net", json.dumps(TINY_NET), "--resume-from", str(checkpoint)]
    argv += ["--restart-learning-rate", "0.0005", "--augment-strength", "0.5"]  # a warm restart
    assert main(argv) == 0
    saved_settings = json.loads((fresh / "settings.json").read_text())
    assert (saved_settings["restart_learning_rate"], saved_settings["augment_strength"]) == (
        0.0005,
        0.5,
    )
    assert json.loads((fresh / "state.json").read_text())["epoch"] == 3
    with open(fresh / "history.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 4 and {len(row) for row in rows} == {len(rows[0])}
    assert rows[0][-2:] == ["val_averaged_accuracy", "val_loss"] and rows[1][-2] == ""
    assert float(rows[3][-2]) >= 0.0  # the new epoch's averaged score, in its column
    import keras

    for folder, rate in ((checkpoint, 0.001), (fresh, 0.0005)):
        optimizer = keras.models.load_model(folder / "last.keras").optimizer
        assert float(optimizer.learning_rate) == pytest.approx(rate)


def test_resume_from_an_incomplete_checkpoint_is_refused(tmp_path: Path, tiny_csv: Path) -> None:
    (tmp_path / "empty").mkdir()
    settings = TrainSettings(
        data=str(tiny_csv),
        run_dir=str(tmp_path / "run"),
        epochs=1,
        net=dict(TINY_NET),
        resume_from=str(tmp_path / "empty"),
    )
    with pytest.raises(FileNotFoundError, match=r"checkpoint lacks last\.keras"):
        train(settings)


def test_a_run_distils_a_trained_net(tmp_path: Path, tiny_csv: Path) -> None:
    """A teacher trained first joins the targets of a second run (here also mixed up by
    models.mixup, and with random erasing); the settings record them."""
    teacher_run = tmp_path / "teacher"
    base = TrainSettings(data=str(tiny_csv), epochs=1, batch_size=16, net=dict(TINY_NET))
    train(replace(base, run_dir=str(teacher_run)))
    student_run = tmp_path / "student"
    main(
        [
            "--data",
            str(tiny_csv),
            "--run-dir",
            str(student_run),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--net",
            json.dumps(TINY_NET),
            "--teacher",
            str(teacher_run / "best.keras"),
            "--teacher-weight",
            "0.3",
            "--mixup",
            "0.4",
            "--erase",
            "1.0",
        ]
    )
    saved = json.loads((student_run / "settings.json").read_text())
    assert saved["teachers"] == [str(teacher_run / "best.keras")]
    assert (saved["teacher_weight"], saved["mixup"], saved["erase"]) == (0.3, 0.4, 1.0)
    assert json.loads((student_run / "state.json").read_text())["epoch"] == 1
    assert (student_run / "best.keras").is_file()


def test_a_warm_restart_counts_patience_afresh(tmp_path: Path, tiny_csv: Path) -> None:
    """A fork at a new rate gets the full plateau patience: a checkpoint one epoch short of
    halving its rate (and of stopping) keeps the new rate after an epoch without progress."""
    import keras

    run = tmp_path / "run"
    base = TrainSettings(data=str(tiny_csv), epochs=1, batch_size=16, net=dict(TINY_NET))
    train(replace(base, run_dir=str(run)))
    state = json.loads((run / "state.json").read_text())
    state["best_val_accuracy"] = 1.0  # unbeatable: every later epoch counts against patience
    state["plateau"] = {"wait": base.plateau_patience - 1, "best": 1.0}
    state["stopper"] = {"wait": base.early_stop_patience - 1, "best": 1.0}
    (run / "state.json").write_text(json.dumps(state))
    train(replace(base, run_dir=str(run), epochs=2, restart_learning_rate=0.0005))
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 2
    assert state["plateau"]["wait"] == 1 and state["stopper"]["wait"] == 1
    optimizer = keras.models.load_model(run / "last.keras").optimizer
    assert float(optimizer.learning_rate) == pytest.approx(0.0005)


def test_a_run_grows_from_a_trained_net(tmp_path: Path, tiny_csv: Path, caplog) -> None:
    """--grow-from starts a deeper net from a trained one's weights (models.net_growth)."""
    import keras

    base = TrainSettings(data=str(tiny_csv), epochs=1, batch_size=16, net=dict(TINY_NET))
    train(replace(base, run_dir=str(tmp_path / "small")))
    deeper = tmp_path / "deeper"
    with caplog.at_level("INFO", logger="models.net_growth"):
        main(
            [
                *("--data", str(tiny_csv), "--run-dir", str(deeper), "--epochs", "1"),
                *("--batch-size", "16", "--net", json.dumps({**TINY_NET, "middle": 1})),
                *("--grow-from", str(tmp_path / "small" / "best.keras")),
            ]
        )
    assert "new blocks ['mid0']" in caplog.text
    saved = json.loads((deeper / "settings.json").read_text())
    assert saved["grow_from"] == str(tmp_path / "small" / "best.keras")
    assert keras.models.load_model(deeper / "last.keras").get_layer("mid0_b_bn") is not None
