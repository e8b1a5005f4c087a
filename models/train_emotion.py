"""Train the emotion network on FER2013 Training, select and report on PublicTest.

One run lives in one folder: ``last.keras`` + ``state.json`` + ``average.npz`` after every
epoch (so a run stopped at any point resumes where it was, also in a later sitting from a
committed checkpoint), ``best.keras`` for the best PublicTest accuracy of the *averaged* model
(:mod:`models.weight_averaging`: a moving average of the epochs' weights with batch norm
re-estimated on un-augmented Training faces — the model we export), ``history.csv``, and at the
end ``metrics.json`` and PNG plots. ``python -m models.train_emotion --help`` lists the settings.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from data import fer2013
from models import distillation, mixup, net_growth

log = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/fer2013/fer2013.csv.gz"


@dataclass
class TrainSettings:
    """Everything that decides a run's result; saved beside the run for reproduction."""

    data: str = str(DEFAULT_DATA)
    run_dir: str = "runs/emotion"
    epochs: int = 120
    batch_size: int = 64
    learning_rate: float = 1e-3
    label_smoothing: float = 0.1
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_learning_rate: float = 1e-5
    early_stop_patience: int = 16
    average_decay: float = 0.7  # weight of the running average against each new epoch
    calibration_faces: int = 4096  # un-augmented Training faces for re-estimating batch norm
    restart_learning_rate: float = 0.0  # on resuming, set the rate to this (0: the checkpoint's)
    augment_strength: float = 1.0  # scales the geometric augmentation (below 1: fine-tuning)
    mixup: float = 0.0  # Beta(α, α) of models.mixup: blend face pairs and targets (0: off)
    erase: float = 0.0  # random erasing (models.emotion_net.build_augmenter; 0: off)
    seed: int = 1337
    limit: int = 0  # use only this many training faces (0 = all); for quick checks
    resume_from: str = ""  # a committed checkpoint folder to continue from (seeds an empty run)
    grow_from: str = ""  # a trained .keras net whose weights start a deeper one (models.net_growth)
    teachers: list[str] = field(default_factory=list)  # .keras nets to distil (models.distillation)
    teacher_weight: float = 0.5  # share of the teachers' probabilities in each target
    net: dict[str, object] = field(default_factory=dict)  # NetConfig overrides


MONITOR = "val_averaged_accuracy"  # what selects best.keras and drives the schedule


class AveragedModel:
    """Keras callback factory: after each epoch, fold the weights into the moving average,
    re-estimate its batch norm on clean faces, score it on PublicTest (``val_averaged_accuracy``
    in the logs, for the schedule and the history) and save it as ``best.keras`` when best."""

    @staticmethod
    def build(run_dir: Path, settings: TrainSettings, calibration: np.ndarray, valid):
        import keras

        from models.weight_averaging import WeightAverage, recalibrate_batch_norm

        class _Averaged(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                state = _read_state(run_dir)
                self.best = state.get("best_val_accuracy", 0.0) if _monitored(state) else 0.0
                self.average = WeightAverage(run_dir / "average.npz", settings.average_decay)
                self.shadow: keras.Model | None = None

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if self.shadow is None:
                    # From the config, not clone_model: a clone is compiled like the original
                    # and saving it writes an optimizer's slots too (15 MB instead of 5).
                    self.shadow = keras.Model.from_config(self.model.get_config())
                self.shadow.set_weights(self.average.update(self.model.get_weights()))
                recalibrate_batch_norm(self.shadow, calibration)
                accuracy = _accuracy(self.shadow, valid)
                if logs is not None:
                    logs[MONITOR] = accuracy
                log.info("epoch %d: averaged model %.4f on PublicTest", epoch + 1, accuracy)
                # The first epoch always leaves a best.keras, even one scoring 0 (a tiny run).
                if accuracy > self.best or not (run_dir / "best.keras").exists():
                    self.best = max(accuracy, self.best)
                    self.shadow.save(run_dir / "best.tmp.keras")
                    (run_dir / "best.tmp.keras").replace(run_dir / "best.keras")

        return _Averaged()


class ResumableCheckpoint:
    """Keras callback factory: saves model + optimizer + callback state after each epoch."""

    @staticmethod
    def build(run_dir: Path, averaged, plateau, stopper):
        import keras

        class _Checkpoint(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                self.model.save(run_dir / "last.tmp.keras")
                (run_dir / "last.tmp.keras").replace(run_dir / "last.keras")
                _write_state(
                    run_dir,
                    {
                        "epoch": epoch + 1,
                        "monitor": MONITOR,
                        "best_val_accuracy": averaged.best,
                        "plateau": {"wait": plateau.wait, "best": _float(plateau.best)},
                        "stopper": {"wait": stopper.wait, "best": _float(stopper.best)},
                    },
                )

        return _Checkpoint()


def _monitored(state: dict) -> bool:
    """Whether a saved state's bests are of :data:`MONITOR` (older runs tracked the raw model)."""
    return state.get("monitor") == MONITOR


def _accuracy(model, split: fer2013.FerSplit) -> float:
    """Plain accuracy (no flipped pass: this runs every epoch) scored by the report's rules."""
    from models import emotion_report

    x = split.images[..., None].astype("float32") / 255.0
    probabilities = np.concatenate(
        [np.asarray(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)]
    )
    return emotion_report.score(split.labels, probabilities)["accuracy"]


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _read_state(run_dir: Path) -> dict:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / "state.tmp.json"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(run_dir / "state.json")


CHECKPOINT_FILES = ("last.keras", "best.keras", "state.json", "history.csv")
OPTIONAL_CHECKPOINT_FILES = ("average.npz",)  # older checkpoints start the average afresh


def seed_run(checkpoint: Path, run_dir: Path) -> None:
    """Start ``run_dir`` from a saved checkpoint (e.g. the one committed under models/)."""
    missing = [name for name in CHECKPOINT_FILES if not (checkpoint / name).exists()]
    if missing:
        raise FileNotFoundError(f"{checkpoint}: checkpoint lacks {', '.join(missing)}")
    for name in CHECKPOINT_FILES + OPTIONAL_CHECKPOINT_FILES:
        if (checkpoint / name).exists():
            shutil.copy2(checkpoint / name, run_dir / name)
    log.info("run %s continues from checkpoint %s", run_dir, checkpoint)


def save_checkpoint(run_dir: Path, checkpoint: Path) -> None:
    """Copy what a later sitting needs to resume ``run_dir`` into ``checkpoint``."""
    checkpoint.mkdir(parents=True, exist_ok=True)
    for name in (*CHECKPOINT_FILES, *OPTIONAL_CHECKPOINT_FILES, "settings.json"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, checkpoint / name)


def _seed_everything(seed: int) -> None:
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def _datasets(settings: TrainSettings, cache_dir: Path):
    import keras
    import tensorflow as tf

    from models.emotion_net import NUM_CLASSES, build_augmenter

    train = fer2013.load_cached(settings.data, {"Training"}, cache_dir)
    valid = fer2013.load_cached(settings.data, {"PublicTest"}, cache_dir)
    if settings.limit:
        rng = np.random.default_rng(settings.seed)
        keep = rng.permutation(len(train))[: settings.limit]
        train = fer2013.FerSplit(train.images[keep], train.labels[keep])
    log.info("training faces %d %s", len(train), train.counts())
    log.info("validation faces %d", len(valid))

    def prepare(split: fer2013.FerSplit) -> tuple[np.ndarray, np.ndarray]:
        x = split.images[..., None].astype("float32") / 255.0
        y = keras.utils.to_categorical(split.labels, NUM_CLASSES).astype("float32")
        return x, y

    augment = build_augmenter(settings.seed, settings.augment_strength, settings.erase)
    x_train, y_train = prepare(train)
    if settings.teachers:
        teacher = distillation.teacher_probabilities(
            settings.teachers, x_train, cache_dir=cache_dir
        )
        log.info(
            "distilling %s (weight %.2f): teachers agree with the labels on %.4f of Training",
            ", ".join(settings.teachers),
            settings.teacher_weight,
            float((teacher.argmax(axis=1) == train.labels).mean()),
        )
        y_train = distillation.mix_targets(y_train, teacher, settings.teacher_weight)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=settings.seed, reshuffle_each_iteration=True)
        .batch(settings.batch_size)
        .map(lambda x, y: (tf.clip_by_value(augment(x, training=True), 0.0, 1.0), y))
    )
    if settings.mixup:
        train_ds = train_ds.map(
            lambda x, y: mixup.mix_batch(x, y, settings.mixup, settings.seed + 5)
        )
    train_ds = train_ds.prefetch(2)
    x_valid, y_valid = prepare(valid)
    valid_ds = tf.data.Dataset.from_tensor_slices((x_valid, y_valid)).batch(256)
    pick = np.random.default_rng(settings.seed).permutation(len(x_train))
    calibration = x_train[pick[: settings.calibration_faces]]
    return train_ds, valid_ds, valid, calibration


def train(settings: TrainSettings) -> dict:
    """Train (or resume) a run and return its metrics on PublicTest."""
    import keras

    from models import emotion_report
    from models.emotion_net import NetConfig, build_emotion_net

    run_dir = Path(settings.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.resume_from and not (run_dir / "state.json").exists():
        seed_run(Path(settings.resume_from), run_dir)
    saved = run_dir / "settings.json"
    if saved.exists() and json.loads(saved.read_text()) != asdict(settings):
        log.warning("settings differ from the run's saved settings; resuming with the new ones")
    saved.write_text(json.dumps(asdict(settings), indent=2))
    _seed_everything(settings.seed)
    train_ds, valid_ds, valid, calibration = _datasets(settings, run_dir / "cache")

    state = _read_state(run_dir)
    initial_epoch = int(state.get("epoch", 0))
    if initial_epoch and (run_dir / "last.keras").exists():
        model = keras.models.load_model(run_dir / "last.keras")
        if settings.restart_learning_rate:
            # A fork of a run (a warm restart): the schedule starts again from this rate, with
            # the plateau and early-stopping patience counted afresh (their bests are kept).
            model.optimizer.learning_rate.assign(settings.restart_learning_rate)
        log.info(
            "resuming at epoch %d (best so far %.4f)", initial_epoch, state["best_val_accuracy"]
        )
    else:
        initial_epoch = 0
        model = build_emotion_net(NetConfig(**settings.net))  # type: ignore[arg-type]
        if settings.grow_from:
            net_growth.grow(keras.models.load_model(settings.grow_from), model)
        model.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
            metrics=["accuracy"],
        )
    log.info("model %s: %d parameters", model.name, model.count_params())

    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor=MONITOR,
        mode="max",
        factor=settings.plateau_factor,
        patience=settings.plateau_patience,
        min_lr=settings.min_learning_rate,
        verbose=1,
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=MONITOR, mode="max", patience=settings.early_stop_patience, verbose=1
    )
    for callback, key in ((plateau, "plateau"), (stopper, "stopper")):
        remembered = state.get(key)
        if remembered and not _monitored(state):
            remembered = {"wait": 0, "best": None}  # counted on another metric: start afresh
        if remembered and initial_epoch and settings.restart_learning_rate:
            remembered = {**remembered, "wait": 0}  # a warm restart: patience starts anew
        if remembered:
            callback.on_train_begin()
            callback.wait = remembered["wait"]
            if remembered.get("best") is not None:
                callback.best = remembered["best"]
    if initial_epoch:
        # Keras resets these in on_train_begin; restore them right after it.
        plateau.on_train_begin = lambda logs=None: None  # type: ignore[method-assign]
        stopper.on_train_begin = lambda logs=None: None  # type: ignore[method-assign]
    averaged = AveragedModel.build(run_dir, settings, calibration, valid)
    checkpoint = ResumableCheckpoint.build(run_dir, averaged, plateau, stopper)
    _add_history_column(run_dir / "history.csv", MONITOR)
    history_log = keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True)

    started = time.monotonic()
    if initial_epoch < settings.epochs:
        model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=settings.epochs,
            initial_epoch=initial_epoch,
            # Order matters: the averaged score enters the logs before anyone reads them, and
            # the checkpoint records the schedule's state after it has moved.
            callbacks=[averaged, history_log, plateau, stopper, checkpoint],
            verbose=2 if not sys.stdout.isatty() else 1,
        )
    log.info("training took %.0f s this sitting", time.monotonic() - started)
    best = keras.models.load_model(run_dir / "best.keras")
    metrics = emotion_report.evaluate_keras(best, valid)
    metrics["epochs_trained"] = _read_state(run_dir).get("epoch", 0)
    metrics["parameters"] = int(best.count_params())
    emotion_report.write_report(run_dir, metrics, run_dir / "history.csv")
    return metrics


def _add_history_column(path: Path, column: str) -> None:
    """Give a history written before ``column`` existed that column (empty for old epochs), so
    the appended rows line up with the header."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or column in rows[0]:
        return
    names = sorted({*rows[0], column} - {"epoch"})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", *names])
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None = None) -> tuple[TrainSettings, str]:
    """Command-line settings; unknown NetConfig keys fail loudly at build time."""
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(prog="moodlift train emotion", description=__doc__)
    parser.add_argument("--data", default=os.environ.get("MOODLIFT_FER2013", defaults.data))
    parser.add_argument("--run-dir", default=defaults.run_dir)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--restart-learning-rate",
        type=float,
        default=0.0,
        help="on resuming, set the learning rate to this (a warm restart; 0: keep the checkpoint's)",
    )
    parser.add_argument(
        "--augment-strength",
        type=float,
        default=defaults.augment_strength,
        help="scale of rotation, shift, shear and zoom (flips stay); e.g. 0.5 to fine-tune",
    )
    parser.add_argument(
        "--mixup",
        type=float,
        default=defaults.mixup,
        help="blend pairs of training faces and their targets, mixing ratio ~ Beta(α, α); 0: off",
    )
    parser.add_argument(
        "--erase",
        type=float,
        default=defaults.erase,
        help="random erasing: blank a noisy patch in up to this share of faces (1.0: ~half); 0: off",
    )
    parser.add_argument("--limit", type=int, default=0, help="train on this many faces only")
    parser.add_argument(
        "--resume-from",
        default="",
        help="checkpoint folder to continue from (e.g. the committed one)",
    )
    parser.add_argument(
        "--grow-from",
        default="",
        help="a trained .keras net to start a new run from, with more middle blocks in --net",
    )
    parser.add_argument(
        "--save-checkpoint", default="", help="after training, copy the resumable state here"
    )
    parser.add_argument(
        "--teacher",
        nargs="+",
        default=[],
        help="trained .keras nets whose mean probabilities (as-is + mirrored) join the targets",
    )
    parser.add_argument(
        "--teacher-weight",
        type=float,
        default=defaults.teacher_weight,
        help="share of the teachers' probabilities in each target (the rest: the label)",
    )
    parser.add_argument(
        "--net", default="{}", help='NetConfig overrides as JSON, e.g. {"middle": 1}'
    )
    args = parser.parse_args(argv)
    net = json.loads(args.net)
    for key, value in net.items():
        if isinstance(value, list):
            net[key] = tuple(value)
    return TrainSettings(
        data=args.data,
        run_dir=args.run_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        restart_learning_rate=args.restart_learning_rate,
        augment_strength=args.augment_strength,
        mixup=args.mixup,
        erase=args.erase,
        seed=args.seed,
        limit=args.limit,
        resume_from=args.resume_from,
        grow_from=args.grow_from,
        teachers=list(args.teacher),
        teacher_weight=args.teacher_weight,
        net=net,
    ), args.save_checkpoint


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings, checkpoint = parse_args(argv)
    metrics = train(settings)
    if checkpoint:
        save_checkpoint(Path(settings.run_dir), Path(checkpoint))
    log.info(
        "PublicTest accuracy %.4f (flip-averaged %.4f)",
        metrics["accuracy"],
        metrics["accuracy_flip"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
