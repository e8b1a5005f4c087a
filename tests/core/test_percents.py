"""Whole percentages that add up to 100, with the most likely one as the card shows it."""

from __future__ import annotations

import numpy as np
import pytest

from core.percents import whole_percent, whole_percents
from data.fer2013 import EMOTIONS


def test_a_reading_whose_rounded_parts_add_up_to_101_is_shown_as_100() -> None:
    reading = dict(zip(EMOTIONS, (0.005, 0.005, 0.125, 0.605, 0.125, 0.005, 0.13), strict=True))
    assert sum(whole_percent(p) for p in reading.values()) != 100  # each rounded on its own
    shown = whole_percents(reading)
    assert sum(shown.values()) == 100
    assert shown["happy"] == 60 == whole_percent(reading["happy"])
    assert list(shown) == list(EMOTIONS)


@pytest.mark.parametrize("seed", range(5))
def test_readings_add_up_to_100_and_stay_within_a_point_in_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    totals = []
    for concentration in (0.1, 0.5, 2.0):
        for row in rng.dirichlet([concentration] * len(EMOTIONS), size=400).astype(np.float32):
            reading = {name: float(p) for name, p in zip(EMOTIONS, row, strict=True)}
            shown = whole_percents(reading)
            top = max(reading, key=reading.__getitem__)
            totals.append(sum(shown.values()))
            assert shown[top] == whole_percent(reading[top])
            assert all(abs(shown[name] - 100 * p) < 1.5 for name, p in reading.items())
            # a more likely emotion never shows less than a less likely one
            ranked = sorted(reading, key=reading.__getitem__, reverse=True)
            assert [shown[name] for name in ranked] == sorted(shown.values(), reverse=True)
    # 99 only in near ties with the largest (kept in order), never 101
    assert set(totals) <= {99, 100} and totals.count(100) >= 0.99 * len(totals)


def test_a_near_tie_keeps_the_order_over_the_total() -> None:
    reading = dict.fromkeys(EMOTIONS, 0.0) | {"happy": 0.3334, "surprise": 0.3333, "fear": 0.3333}
    shown = whole_percents(reading)
    assert (shown["happy"], shown["surprise"], shown["fear"]) == (33, 33, 33)


def test_one_certain_emotion_and_nothing_at_all() -> None:
    certain = dict.fromkeys(EMOTIONS, 0.0) | {"sad": 1.0}
    assert whole_percents(certain) == dict.fromkeys(EMOTIONS, 0) | {"sad": 100}
    assert whole_percents(dict.fromkeys(EMOTIONS, 0.0)) == dict.fromkeys(EMOTIONS, 0)
    assert whole_percents({}) == {}
    assert whole_percent(1.2) == 100 and whole_percent(-0.1) == 0
