"""The FER2013 readers: the Kaggle CSV (plain and gzip), the folder layout, and their errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import fer2013


def _row(label: int, value: int, usage: str) -> str:
    return f"{label},{' '.join([str(value)] * fer2013.PIXELS)},{usage}\n"


def _write_csv(path: Path, rows: list[str], header: str = "emotion,pixels,Usage\n") -> Path:
    text = header + "".join(rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["faces.csv", "faces.csv.gz"])
def test_csv_reads_faces_labels_and_filters_by_usage(tmp_path: Path, name: str) -> None:
    path = _write_csv(
        tmp_path / name,
        [_row(3, 10, "Training"), _row(0, 20, "PublicTest"), _row(6, 30, "Training")],
    )
    everything = fer2013.load(path)
    assert everything.images.shape == (3, 48, 48)
    assert everything.images.dtype == np.uint8
    assert everything.labels.tolist() == [3, 0, 6]
    training = fer2013.load(path, {"Training"})
    assert training.labels.tolist() == [3, 6]
    assert int(training.images[1, 0, 0]) == 30
    assert training.counts()["happy"] == 1 and training.counts()["neutral"] == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("9," + " ".join(["1"] * 2304) + ",Training\n", "emotion 9 is not in 0-6"),
        ("x," + " ".join(["1"] * 2304) + ",Training\n", "emotion is not an integer"),
        ("1," + " ".join(["1"] * 100) + ",Training\n", "100 pixels, expected 2304"),
        ("1," + " ".join(["300"] * 2304) + ",Training\n", "pixel values must be 0-255"),
        ("1," + " ".join(["a"] * 2304) + ",Training\n", "pixels are not integers"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", [_row(0, 1, "Training"), row])
    with pytest.raises(fer2013.FerFormatError, match=rf"bad.csv:3: {message}"):
        fer2013.load(path)


def test_csv_without_the_columns_is_refused(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "other.csv", ["1,2\n"], header="a,b\n")
    with pytest.raises(fer2013.FerFormatError, match="expected columns emotion,pixels"):
        fer2013.load(path)
    with pytest.raises(fer2013.FerFormatError, match="no such file"):
        fer2013.load(tmp_path / "missing.csv")


def test_folder_layout_reads_train_and_test(tmp_path: Path) -> None:
    for split, emotion, value in (
        ("train", "happy", 50),
        ("train", "sad", 60),
        ("test", "fear", 70),
    ):
        folder = tmp_path / split / emotion
        folder.mkdir(parents=True)
        Image.fromarray(np.full((48, 48), value, np.uint8)).save(folder / "a.png")
    # A 96 px colour face is converted and resized like the rest.
    Image.new("RGB", (96, 96), (200, 200, 200)).save(tmp_path / "train" / "happy" / "b.jpg")
    train = fer2013.load(tmp_path, {"Training"})
    assert sorted(train.labels.tolist()) == [3, 3, 4]
    assert train.images.shape == (3, 48, 48)
    test = fer2013.load(tmp_path, {"PublicTest"})
    assert test.labels.tolist() == [2]


def test_folder_with_an_unknown_emotion_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(fer2013.FerFormatError, match="unknown emotion folder 'bored'"):
        fer2013.load(tmp_path)


def test_cached_load_parses_once(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "faces.csv", [_row(1, 5, "Training"), _row(2, 6, "PublicTest")])
    first = fer2013.load_cached(path, {"Training"}, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    again = fer2013.load_cached(path, {"Training"}, tmp_path / "cache")
    assert np.array_equal(first.images, again.images)
    assert again.labels.tolist() == [1]


def test_the_shared_fer2013_file_has_the_documented_counts(fer2013_csv: Path) -> None:
    public = fer2013.load(fer2013_csv, {"PublicTest"})
    assert len(public) == 3589
    assert public.counts()["disgust"] == 56
