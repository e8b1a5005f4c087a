"""Personal taste: which unheard track of a mood to serve a user who has rated songs.

The one policy, used by the store's pick (:meth:`core.store.Store.pick_and_deliver`) and by the
offline evaluation (``bench/taste_sim.py``):

1. Every track is a point in a small space of audio features (:data:`TASTE_FEATURES`: valence,
   energy, danceability, acousticness, tempo — mood, drive, groove, texture, pace), each scaled
   to mean 0 and standard deviation 1 over the tracks being compared.
2. A candidate's score is the rating its rated neighbours predict: a Gaussian-kernel weighted
   mean of their ratings (+1 liked, -1 disliked), pulled toward 0 by a neutral prior of weight
   ``prior``. Near liked tracks it tends to +1, near disliked ones to -1, and where the user
   rated nothing near it stays 0 — so dislikes alone steer away from their region.
3. Exploration: with probability ``exploration`` the pick ignores the scores and takes any
   candidate at random (the unpersonalised pick), so users keep meeting new kinds of songs and
   a mistaken early rating cannot lock them in; otherwise the best score wins (ties at random).

Users without ratings get the unpersonalised pick unchanged (the store does not even call this).
The policy only orders the candidates it is given, so the store's no-repeat guarantee holds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TASTE_FEATURES: tuple[str, ...] = ("valence", "energy", "danceability", "acousticness", "tempo")
"""Catalog columns (see :class:`core.store.schema.Track`) that place a track in taste space."""

Features = Sequence[float]


@dataclass(frozen=True)
class TastePolicy:
    """Kernel-smoothed ratings with ε-greedy exploration; the defaults are the served ones."""

    bandwidth: float = 0.5  # kernel width, in standard deviations of the scaled features
    prior: float = 1.0  # weight of the neutral (0) prior against the neighbours' ratings
    exploration: float = 0.1  # share of picks made at random regardless of the ratings

    def scores(
        self, candidates: Sequence[Features], rated: Sequence[Features], values: Sequence[int]
    ) -> np.ndarray:
        """The predicted rating, in (-1, 1), of each candidate given the user's ratings."""
        if not len(candidates):
            return np.zeros(0)
        # float32: ample for scores, and numpy's exp runs several times faster on it.
        pool = np.asarray(candidates, dtype=np.float32)
        if not len(rated):
            return np.zeros(len(pool))
        seen = np.asarray(rated, dtype=np.float32)
        both = np.vstack([pool, seen])
        centre, spread = both.mean(axis=0), both.std(axis=0)
        spread[spread == 0] = 1.0
        pool, seen = (pool - centre) / spread, (seen - centre) / spread
        # |a - b|² = |a|² + |b|² - 2 a·b, without a (pool x seen x features) array; einsum
        # rather than BLAS, whose threads only contend on a small, busy machine.
        squared = (pool**2).sum(axis=1)[:, None] + (seen**2).sum(axis=1)[None, :]
        squared = np.maximum(squared - 2 * np.einsum("ik,jk->ij", pool, seen), 0.0)
        weights = np.exp(-squared / (2 * self.bandwidth**2))
        ratings = np.asarray(values, dtype=np.float32)
        return (weights @ ratings) / (self.prior + weights.sum(axis=1))

    def choose(
        self,
        candidates: Sequence[Features],
        rated: Sequence[Features],
        values: Sequence[int],
        rng: random.Random | None = None,
    ) -> int:
        """The index in ``candidates`` of the track to serve next."""
        if not len(candidates):
            raise ValueError("no candidates to choose from")
        rng = rng or random.Random()
        if not len(rated) or rng.random() < self.exploration:
            return rng.randrange(len(candidates))
        scores = self.scores(candidates, rated, values)
        best = np.flatnonzero(scores >= scores.max() - 1e-9)
        return int(best[rng.randrange(len(best))])
