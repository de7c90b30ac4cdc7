"""How ``facecast serve`` logs: one format, quiet HTTP clients, and no secret in any record.

python-telegram-bot puts the bot token in every Bot API URL, and httpx logs each request's
URL at INFO; a library's exception may quote a token too. :class:`RedactSecrets` sits on the
root logger's handlers, so every record that reaches them, from any logger, is scrubbed of
every configured secret (the token as it is and as it appears in a URL) before it is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from core.config import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
# They log every request (with its URL) at INFO; warnings and errors still come through.
CHATTY = ("httpx", "httpcore")


def secrets_of(settings: Settings) -> list[str]:
    """The configured secrets: chat tokens, the secret key, the passwords in the broker's
    and the shared state's Redis URLs."""
    values = (settings.telegram_token, settings.discord_token, settings.secret_key)
    found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
    if settings.secret_key is not None:  # each of several keys (rotation), on its own too
        found += [k.strip() for k in settings.secret_key.get_secret_value().split(",")]
    for url in (settings.broker_url, settings.state_url):  # redis://:password@host
        password = urlsplit(url.get_secret_value()).password if url is not None else None
        found += [password] if password else []
    return [value for value in found if value]


class RedactSecrets(logging.Filter):
    """Replace each secret in a record's message, arguments, traceback and stack."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {form for secret in secrets for form in (secret, quote(secret, safe=""))}
        forms.update(quote(secret) for secret in secrets)
        self.forms = sorted((f for f in forms if f), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for form in self.forms:
            text = text.replace(form, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.forms:
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: logging reports that itself
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def setup_logging(settings: Settings, level: int = logging.INFO) -> RedactSecrets:
    """Log to stderr at ``level``, every handler behind a :class:`RedactSecrets`."""
    logging.basicConfig(level=level, format=FORMAT)
    redact = RedactSecrets(secrets_of(settings))
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redact


__all__ = ["REDACTED", "RedactSecrets", "secrets_of", "setup_logging"]
