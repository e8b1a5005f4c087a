"""The one error a model file raises when it cannot be used, whichever model it is."""

from __future__ import annotations


class ModelFileError(RuntimeError):
    """A model file is missing, damaged, or not the model the code expects; the message names
    the file (callers print it as is: ``moodlift`` makes it one line on stderr)."""
