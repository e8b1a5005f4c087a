"""Log filters that take secrets out of records before any handler formats them.

Libraries log request URLs, and some URLs carry a secret: the Telegram bot token, a Discord
interaction token. A :class:`Redactor` attached to the libraries' loggers rewrites each record's
message and traceback; each platform says what to scrub.
"""

from __future__ import annotations

import logging


class Redactor(logging.Filter):
    """Rewrite a record's message and traceback through :meth:`scrub`; always keep the record."""

    LOGGERS: tuple[str, ...] = ()  # where the secret shows up

    def scrub(self, text: str) -> str:
        raise NotImplementedError

    def key(self) -> object:
        """Two filters with the same key do the same work (so one is enough per logger)."""
        return type(self)

    def filter(self, record: logging.LogRecord) -> bool:
        # Freeze the message now: libraries log objects they later change (python-telegram-bot
        # rewrites a dict to hold the file URL, with the token), so formatting later could leak.
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True

    def install(self) -> None:
        """Attach to :attr:`LOGGERS` (idempotent)."""
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, Redactor) and f.key() == self.key() for f in logger.filters):
                logger.addFilter(self)
