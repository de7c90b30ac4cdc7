"""The server's keys, and encryption at rest for stored faces.

Every key FaceCast uses is derived (HKDF-SHA256, one ``info`` per purpose) from the master
secret: ``FACECAST_SECRET_KEY``, or, when none is configured, a random one generated into
``<data dir>/secret.key`` (mode 0600) on first start, so faces are always encrypted.
``FACECAST_SECRET_KEY`` may list several secrets separated by commas to rotate: the first
encrypts and signs, all of them decrypt and verify.

Data written before keys were derived stays readable: faces sealed with the old
SHA-256-of-the-secret key, faces stored as plain npz by a keyless server, and account hashes
keyed with the raw secret (or the old default pepper) are all still recognised.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.config import Settings
from core.errors import BadMedia

KEY_FILE = "secret.key"
# What a keyless server keyed account hashes with before keys were derived.
OLD_DEFAULT_PEPPER = b"facecast"
# The npz (zip) header of a face stored unencrypted by a keyless server of old.
_PLAIN_NPZ = b"PK\x03\x04"

FACES = "faces"
PEPPER = "account-pepper"
WEB_SESSIONS = "web-sessions"


def derive(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose; keys for different purposes are independent."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"facecast:{purpose}".encode()
    )
    return hkdf.derive(secret.encode())


def _fernet(key: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(key))


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by this user only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):  # a folder the operator made, not ours
        path.chmod(0o700)
    return path


def _key_file(folder: Path) -> str:
    """The generated secret in ``folder``, made (0600, never overwritten) on first use."""
    path = folder / KEY_FILE
    private_dir(folder)
    with contextlib.suppress(FileExistsError):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class Keys:
    """The master secrets, newest first, and what is derived from them."""

    secrets: tuple[str, ...]
    generated: bool = False  # from the key file, not from FACECAST_SECRET_KEY

    @classmethod
    def load(cls, settings: Settings) -> Keys:
        configured = settings.secret_key.get_secret_value() if settings.secret_key else ""
        listed = tuple(part.strip() for part in configured.split(",") if part.strip())
        if listed:
            return cls(listed)
        return cls((_key_file(settings.resolved_data_dir),), generated=True)

    def derived(self, purpose: str) -> list[bytes]:
        """One key per secret for ``purpose``, the current one first."""
        return [derive(secret, purpose) for secret in self.secrets]

    @property
    def pepper(self) -> bytes:
        return self.derived(PEPPER)[0]

    @property
    def old_peppers(self) -> list[bytes]:
        """Peppers account hashes may have been keyed with: rotated-out secrets' and those
        of servers before keys were derived."""
        older = self.derived(PEPPER)[1:] + [secret.encode() for secret in self.secrets]
        return [*older, OLD_DEFAULT_PEPPER]

    def sealer(self) -> Sealer:
        return Sealer(self)

    @property
    def web(self) -> list[bytes]:
        """Web session signing keys: the first signs, all verify."""
        legacy = [hashlib.sha256(b"web:" + s.encode()).digest() for s in self.secrets]
        return self.derived(WEB_SESSIONS) + legacy


class Sealer:
    """Fernet encryption of face data with keys derived for faces (MultiFernet: the
    current key encrypts, every listed one decrypts)."""

    def __init__(self, keys: Keys) -> None:
        fernets = [_fernet(key) for key in keys.derived(FACES)]
        # Faces sealed before keys were derived: SHA-256 of the secret.
        fernets += [_fernet(hashlib.sha256(s.encode()).digest()) for s in keys.secrets]
        self._fernet = MultiFernet(fernets)

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, data: bytes) -> bytes:
        if data.startswith(_PLAIN_NPZ):  # stored by a keyless server before keys existed
            return data
        try:
            return self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise BadMedia("A saved face can't be read with this server's key.") from exc


__all__ = ["KEY_FILE", "Keys", "Sealer", "derive", "private_dir"]
