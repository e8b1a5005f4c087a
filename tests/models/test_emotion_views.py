"""Test-time views: what each view does to a face, and how the export picks the served ones."""

from __future__ import annotations

import numpy as np
import pytest

from models import emotion_views
from models.emotion_views import MIRRORED, View, choose, shifted, symmetric


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
    views = MIRRORED + symmetric(1.1, 8.0) + shifted(2)
    assert emotion_views.from_json(emotion_views.to_json(views)) == views
    older = [{"mirror": True, "scale": 1.0, "angle": 0.0}]  # an export from before shifts
    assert emotion_views.from_json(older) == (View(mirror=True),)


@pytest.mark.parametrize("shift", [[1], [1, 2, 3], [1.7, 0], "2,2", [True, 0]])
def test_a_malformed_shift_is_refused_on_loading(shift: object) -> None:
    with pytest.raises(ValueError, match="two whole pixels"):
        emotion_views.from_json([{"mirror": False, "scale": 1.0, "angle": 0.0, "shift": shift}])


def test_a_shifted_view_moves_the_face_and_reflects_the_border() -> None:
    x = _faces(2)
    right_down = View(shift=(2, 1)).apply(x)
    np.testing.assert_array_equal(right_down[:, 1:, 2:], x[:, :-1, :-2])
    np.testing.assert_array_equal(right_down[:, 1:, :2], x[:, :-1, 1::-1])  # reflected
    mirrored_left = View(mirror=True, shift=(-3, 0)).apply(x)
    np.testing.assert_array_equal(mirrored_left[:, :, :-3], x[:, :, ::-1][:, :, 3:])


def test_a_shifted_group_is_the_eight_moves_each_mirrored() -> None:
    group = shifted(2)
    assert len(group) == 16 and len(set(group)) == 16
    assert {view.shift for view in group} == {
        (dx, dy) for dx in (-2, 0, 2) for dy in (-2, 0, 2) if (dx, dy) != (0, 0)
    }
    assert sum(view.mirror for view in group) == 8
    assert not set(group) & set(MIRRORED)  # as-is and mirrored are the reading's own
    assert View(mirror=True, shift=(2, -2)).name == "mirror, shift +2,-2 px"


def test_the_budget_lets_one_shifted_group_in_and_no_more() -> None:
    """18 views: as-is, mirrored and one radius's 16 shifts; two radii would be 34."""
    labels = np.arange(140) % 7
    wrong = (labels + 1) % 7
    base = _one_hot(np.where(np.arange(140) < 80, labels, wrong), 0.6)
    by_view = {view: base for view in MIRRORED}
    by_view.update({view: _one_hot(labels, 1.0) for r in (1, 2) for view in shifted(r)})
    chosen = choose(by_view, labels, groups=[shifted(1), shifted(2)])
    assert len(chosen) == emotion_views.MAX_SERVED_VIEWS == 18
    assert chosen[:2] == MIRRORED and set(chosen[2:]) in ({*shifted(1)}, {*shifted(2)})


def test_held_out_scores_the_choice_on_faces_it_did_not_see() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 400)
    wrong = (labels + 1) % 7
    base = _one_hot(np.where(rng.random(400) < 0.6, labels, wrong), 0.6)
    by_view = {view: base for view in MIRRORED}
    # The zoomed pair is right on 90 % of faces; the other pair is noise.
    by_view.update(
        {v: _one_hot(np.where(rng.random(400) < 0.9, labels, wrong)) for v in symmetric(1.1)}
    )
    by_view.update({v: rng.dirichlet(np.ones(7), 400) for v in symmetric(0.9)})
    groups = [symmetric(1.1), symmetric(0.9)]
    helped = emotion_views.held_out(by_view, labels, splits=5, groups=groups)
    assert helped.mirrored_accuracy == pytest.approx((base.argmax(1) == labels).mean(), abs=0.02)
    assert helped.accuracy > helped.mirrored_accuracy + 0.1 and helped.gain_share == 1.0
    alone = emotion_views.held_out(by_view, labels, splits=5, groups=[symmetric(0.9)], min_gain=1)
    assert alone.accuracy == alone.mirrored_accuracy and alone.gain_share == 0.0


def test_held_out_does_not_flatter_a_choice_among_lucky_groups() -> None:
    """Groups that only jitter the answers: the best of them gains on the faces it is chosen
    on, by luck, and the held-out score does not repeat that gain."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, 600)
    base = rng.dirichlet(np.ones(7), 600) + 0.15 * np.eye(7)[labels]
    by_view = {view: base for view in MIRRORED}
    groups = [symmetric(scale) for scale in (0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2)]
    for group in groups:
        jittered = base + rng.normal(0, 0.1, base.shape)
        by_view.update({view: jittered for view in group})
    mirrored = float((base.argmax(1) == labels).mean())
    chosen = choose(by_view, labels, groups=groups, max_views=4, min_gain=0)
    lucky = float((emotion_views._mean(by_view, chosen).argmax(1) == labels).mean()) - mirrored
    honest = emotion_views.held_out(
        by_view, labels, splits=5, groups=groups, max_views=4, min_gain=0
    )
    assert lucky > 0.005  # chosen on the faces it is scored on (measured: 1 point)
    assert honest.accuracy - honest.mirrored_accuracy < lucky / 2
