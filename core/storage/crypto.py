"""Encryption at rest for stored faces."""

from __future__ import annotations

import base64
import hashlib

from core.errors import BadMedia


class Sealer:
    """Fernet encryption with a key derived from the configured secret; a no-op without."""

    def __init__(self, secret: str | None) -> None:
        self._fernet = None
        if secret:
            from cryptography.fernet import Fernet

            key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
            self._fernet = Fernet(key)

    @property
    def encrypting(self) -> bool:
        return self._fernet is not None

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data) if self._fernet else data

    def open(self, data: bytes) -> bytes:
        if self._fernet is None:
            return data
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise BadMedia("A saved face can't be read with this server's key.") from exc


__all__ = ["Sealer"]
