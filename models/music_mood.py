"""Predict a song's mood from its audio features: the API the catalog uses.

The artifact is a joblib file holding the fitted scikit-learn pipeline (feature engineering
and scaling included) with its label names, input columns and a version string. Loading is
explicit (``MusicMoodModel.load()`` at start-up), never at import. Only load artifacts you
trust: joblib files are pickles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator

from models.errors import ModelFileError
from models.music_features import RAW_FEATURES, Rows, as_feature_frame

log = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path(__file__).with_name("music_mood.joblib")
ARTIFACT_FORMAT = 1


class ModelArtifactError(ModelFileError):
    """The model file is missing or not a song-mood artifact; the message names the file."""


@dataclass(frozen=True)
class MusicMoodModel:
    """A fitted song-mood pipeline; ``predict`` takes rows in either track file's format."""

    pipeline: BaseEstimator
    labels: tuple[str, ...]
    version: str
    recipe: str
    features: tuple[str, ...] = RAW_FEATURES

    @classmethod
    def load(cls, path: Path | str | None = None) -> MusicMoodModel:
        """Load an artifact written by :meth:`save` (default: the packaged one)."""
        source = Path(path) if path is not None else DEFAULT_ARTIFACT
        if not source.is_file():
            raise ModelArtifactError(
                f"{source}: no song-mood model here (train one with `moodlift train music`)"
            )
        try:
            payload = joblib.load(source)
        except Exception as exc:  # unpickling a damaged file can fail in many ways
            raise ModelArtifactError(
                f"{source}: unreadable song-mood model ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
            raise ModelArtifactError(f"{source}: not a song-mood artifact (format 1)")
        if payload.get("sklearn_version") != sklearn.__version__:
            log.warning(
                "%s was saved with scikit-learn %s, running %s; retrain if predictions look off",
                source,
                payload.get("sklearn_version"),
                sklearn.__version__,
            )
        return cls(
            pipeline=payload["pipeline"],
            labels=tuple(payload["labels"]),
            version=str(payload["version"]),
            recipe=str(payload["recipe"]),
            features=tuple(payload["features"]),
        )

    def save(self, path: Path | str) -> Path:
        """Write the artifact (compressed; a few hundred KiB)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": ARTIFACT_FORMAT,
            "pipeline": self.pipeline,
            "labels": list(self.labels),
            "version": self.version,
            "recipe": self.recipe,
            "features": list(self.features),
            "sklearn_version": sklearn.__version__,
        }
        joblib.dump(payload, target, compress=3)
        return target

    def probabilities(self, rows: Rows) -> pd.DataFrame:
        """One row per input, one column per mood (lower-case), each row summing to 1."""
        frame = as_feature_frame(rows)
        if frame.empty:
            return pd.DataFrame(columns=list(self.labels), dtype=float)
        proba = self.pipeline.predict_proba(frame)
        classes = [str(c) for c in self.pipeline.classes_]
        return pd.DataFrame(proba, columns=classes, index=frame.index)[list(self.labels)]

    def predict_frame(self, rows: Rows) -> pd.DataFrame:
        """Columns ``mood`` and ``confidence`` (the winning probability), index as the input."""
        proba = self.probabilities(rows)
        values = proba.to_numpy()
        best = values.argmax(axis=1) if len(values) else np.empty(0, dtype=int)
        return pd.DataFrame(
            {
                "mood": np.asarray(self.labels, dtype=object)[best],
                "confidence": values[np.arange(len(values)), best],
            },
            index=proba.index,
        )

    def predict(self, rows: Rows) -> list[tuple[str, float]]:
        """``[(mood, confidence), ...]`` in input order; mood is calm|energetic|happy|sad."""
        frame = self.predict_frame(rows)
        return [(str(m), float(c)) for m, c in zip(frame["mood"], frame["confidence"], strict=True)]
