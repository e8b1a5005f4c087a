"""Texts built from values: when a reading was taken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot import wording

NOW = datetime(2026, 12, 3, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("before", "said"),
    [
        (timedelta(seconds=20), "just now"),
        (timedelta(minutes=1, seconds=5), "1 minute ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=23, minutes=59), "23 hours ago"),
        (timedelta(days=1, hours=7), "on 2026-12-01"),
        (timedelta(seconds=-30), "just now"),  # another machine's clock a little ahead
        (timedelta(days=-2), "on 2026-12-05"),  # a clock far off: the date, not "just now"
    ],
)
def test_a_moment_is_said_relative_to_now(before: timedelta, said: str) -> None:
    assert wording.ago(NOW - before, NOW) == said


def test_a_naive_moment_from_the_store_is_utc() -> None:
    naive = (NOW - timedelta(minutes=5)).replace(tzinfo=None)
    assert wording.ago(naive, NOW) == "5 minutes ago"
    # The same instant in another zone is the same moment.
    tokyo = (NOW - timedelta(hours=2)).astimezone(timezone(timedelta(hours=9)))
    assert wording.ago(tokyo, NOW) == "2 hours ago"
    assert wording.ago(naive, NOW.replace(tzinfo=None)) == "5 minutes ago"


def test_mood_rows_add_up_to_100_and_open_with_the_headline_figure() -> None:
    from core.replies import EmotionSummary

    reading = {
        "angry": 0.005,
        "disgust": 0.005,
        "fear": 0.125,
        "happy": 0.605,
        "sad": 0.125,
        "surprise": 0.005,
        "neutral": 0.13,
    }
    summary = EmotionSummary("happy", 0.605, reading, "happy", datetime.now(UTC))
    rows = wording.probability_lines(reading)
    figures = [int(row.rsplit(maxsplit=2)[-2]) for row in rows]
    assert sum(figures) == 100 and rows[0].startswith("happy")
    assert f"({figures[0]} %)" in wording.summary_headline(summary)


def test_a_crowd_note_names_the_largest_faces_and_counts_the_rest() -> None:
    from core.replies import FaceReading

    def faces(n: int) -> tuple[FaceReading, ...]:
        return tuple(FaceReading((0, 0, 9, 9), "happy", 0.9, {"happy": 0.9}) for _ in range(n))

    assert wording.faces_note(faces(1)) is None
    assert wording.faces_note(faces(6)) == "6 faces: " + ", ".join(["happy 90 %"] * 6) + "."
    crowd = wording.faces_note(faces(20))
    assert crowd == "20 faces: " + ", ".join(["happy 90 %"] * 5) + ", and 15 more."
