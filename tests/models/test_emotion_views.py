"""Test-time views: what each view does to a face, and how the export picks the served ones."""

from __future__ import annotations

import numpy as np

from models import emotion_views
from models.emotion_views import MIRRORED, View, choose, symmetric


def _faces(n: int = 3) -> np.ndarray:
    return np.random.default_rng(7).random((n, 48, 48, 1), dtype=np.float32)


def test_views_keep_shape_and_only_plain_keeps_pixels() -> None:
    x = _faces()
    for group in emotion_views.CANDIDATES:
        for view in group:
            seen = view.apply(x)
            assert seen.shape == x.shape and seen.dtype == np.float32
            assert np.array_equal(seen, x) == (view == View())


def test_mirroring_a_turned_face_equals_turning_the_mirrored_face_back() -> None:
    """Why :func:`symmetric` pairs (turn +a) with (mirror, turn -a)."""
    x = _faces()
    turned, mirrored_back = symmetric(1.1, 8.0)[:2]
    difference = np.abs(turned.apply(x)[:, :, ::-1] - mirrored_back.apply(x))
    # Equal up to OpenCV's fixed-point interpolation on a few pixels.
    assert np.mean(difference < 1e-4) > 0.9 and difference.mean() < 2e-3


def test_render_and_average_are_inverse_in_layout() -> None:
    x = _faces(4)
    views = symmetric(1.0) + symmetric(1.2)
    batch = emotion_views.render(x, views)
    assert batch.shape == (len(views) * 4, 48, 48, 1)
    np.testing.assert_array_equal(batch[4:8], x[:, :, ::-1])  # view after view
    fake = np.arange(len(views) * 4 * 7, dtype=np.float32).reshape(-1, 7)
    expected = fake.reshape(len(views), 4, 7).mean(axis=0)
    np.testing.assert_allclose(emotion_views.average(fake, len(views)), expected)


def _one_hot(labels: np.ndarray, strength: float = 1.0) -> np.ndarray:
    out = np.full((len(labels), 7), (1 - strength) / 7, dtype=np.float32)
    out[np.arange(len(labels)), labels] += strength
    return out


def test_choose_adds_the_group_that_corrects_mistakes_and_stops_when_none_helps() -> None:
    labels = np.arange(100) % 7
    wrong = (labels + 1) % 7
    helpful, useless = symmetric(1.1), symmetric(0.9)
    by_view = {
        # As-is and mirrored are right on the first 60 faces only.
        MIRRORED[0]: _one_hot(np.where(np.arange(100) < 60, labels, wrong), 0.6),
        MIRRORED[1]: _one_hot(np.where(np.arange(100) < 60, labels, wrong), 0.6),
        # The zoomed pair is confidently right everywhere; the other pair always wrong.
        **{view: _one_hot(labels, 1.0) for view in helpful},
        **{view: _one_hot(wrong, 1.0) for view in useless},
    }
    chosen = choose(by_view, labels, groups=[useless, helpful], max_views=8)
    assert chosen == MIRRORED + helpful


def test_choose_respects_the_view_budget() -> None:
    labels = np.arange(50) % 7
    by_view = {view: _one_hot(labels, 0.5) for view in MIRRORED}
    by_view.update({view: _one_hot(labels, 1.0) for view in symmetric(1.2, 8.0)})
    assert choose(by_view, labels, groups=[symmetric(1.2, 8.0)], max_views=4) == MIRRORED


def test_a_group_must_gain_enough_to_be_taken() -> None:
    labels = np.arange(1000) % 7
    wrong = (labels + 1) % 7
    # As-is and mirrored are right on 600 faces; the zoomed pair fixes 4 more (0.4 points).
    base = _one_hot(np.where(np.arange(1000) < 600, labels, wrong), 0.6)
    fixed = np.where(np.arange(1000) < 604, labels, wrong)
    by_view = {view: base for view in MIRRORED}
    by_view.update({view: _one_hot(fixed, 1.0) for view in symmetric(1.1)})
    assert choose(by_view, labels, groups=[symmetric(1.1)]) == MIRRORED
    assert choose(by_view, labels, groups=[symmetric(1.1)], min_gain=0.003) == (
        MIRRORED + symmetric(1.1)
    )


def test_views_round_trip_through_json() -> None:
    views = MIRRORED + symmetric(1.1, 8.0)
    assert emotion_views.from_json(emotion_views.to_json(views)) == views
