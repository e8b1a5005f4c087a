from __future__ import annotations

import pytest

from core.errors import UnknownEmotion, UnknownMode, UnknownMood
from core.moods import EMOTIONS, MOODS, Mode, mood_for, parse_mode, reason


def test_lift_is_the_seed_policy() -> None:
    assert {e: mood_for(e) for e in EMOTIONS} == {
        "angry": "calm",
        "disgust": "calm",
        "fear": "calm",
        "surprise": "energetic",
        "happy": "happy",
        "neutral": "happy",
        "sad": "sad",
    }


def test_match_stays_with_the_feeling() -> None:
    assert {e: mood_for(e, "match") for e in EMOTIONS} == {
        "angry": "energetic",
        "disgust": "sad",
        "fear": "calm",
        "surprise": "energetic",
        "happy": "happy",
        "neutral": "calm",
        "sad": "sad",
    }
    assert mood_for("SAD", Mode.MATCH) == "sad"


def test_every_pair_has_a_reason() -> None:
    assert reason("sad", "calm") == "you look sad — here is something calm"
    assert reason("sad", "sad") == "you look sad — here is a sad song to keep you company"
    for emotion in EMOTIONS:
        for mood in MOODS:
            assert reason(emotion, mood).startswith("you look ")


def test_unknown_names_are_domain_errors() -> None:
    with pytest.raises(UnknownEmotion, match="contempt"):
        mood_for("contempt")
    with pytest.raises(UnknownMood):
        reason("sad", "angsty")
    with pytest.raises(UnknownMode):
        parse_mode("sideways")


def test_the_bot_lists_the_moods_the_song_model_knows() -> None:
    """core lists them calm → sad for people; the song-mood model's labels are sorted."""
    from data import music

    assert sorted(MOODS) == sorted(music.MOODS)
