"""Clip packs as content-addressed archives, so render workers on other machines get them.

A pack's digest is the sha256 of its files (relative names and bytes, in name order): two
copies of a pack with the same digest render the same. The front-end publishes a pack as
one archive keyed by its digest; a worker unpacks it into its own cache under that digest,
after checking the digest of what it unpacked, and so never renders a stale or damaged pack.
Nothing here talks to a network: the bytes are handed in and out.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from core.errors import ClipNotFound

MAX_PACK_BYTES = 64 * 1024 * 1024  # packs are ~2 MB; a bigger archive is refused unread


def _files(folder: Path) -> list[tuple[str, Path]]:
    return sorted(
        (path.relative_to(folder).as_posix(), path)
        for path in folder.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    )


def _digest(files: list[tuple[str, bytes]]) -> str:
    hasher = hashlib.sha256()
    for name, data in files:
        encoded = name.encode("utf-8")
        hasher.update(len(encoded).to_bytes(4, "big") + encoded)
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()


def pack_digest(folder: Path) -> str:
    """The sha256 of a pack folder's files (hidden files left out)."""
    return _digest([(name, path.read_bytes()) for name, path in _files(folder)])


class PackDigests:
    """Digests of pack folders, computed again only when a file's size or time changed."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[tuple[str, int, int], ...], str]] = {}

    def of(self, folder: Path) -> str:
        stamp = tuple(
            (name, path.stat().st_mtime_ns, path.stat().st_size) for name, path in _files(folder)
        )
        known = self._known.get(folder)
        if known is None or known[0] != stamp:
            known = (stamp, pack_digest(folder))
            self._known[folder] = known
        return known[1]


def pack_archive(folder: Path) -> tuple[str, bytes]:
    """``(digest, archive)`` of a pack folder: a zip of its files (stored, not compressed:
    the media is compressed already)."""
    files = [(name, path.read_bytes()) for name, path in _files(folder)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return _digest(files), buffer.getvalue()


def unpack_archive(data: bytes, pack_id: str, digest: str, cache: Path) -> Path:
    """The pack ``pack_id`` with ``digest``, unpacked once into ``cache/<digest>/<pack_id>``
    (atomically); raises :class:`ClipNotFound` when the archive's content is not that
    digest."""
    destination = cache / digest / pack_id
    if destination.is_dir():
        return destination
    if len(data) > MAX_PACK_BYTES:
        raise ClipNotFound(f"The clip {pack_id!r} arrived too big to be a pack.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = []
            for info in archive.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("/") or ".." in Path(name).parts:
                    continue  # a pack has plain relative files only
                files.append((name, archive.read(info)))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ClipNotFound(f"The clip {pack_id!r} arrived damaged.") from exc
    files.sort()
    if _digest(files) != digest:
        raise ClipNotFound(f"The clip {pack_id!r} arrived with other content than ordered.")
    (cache / digest).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{pack_id}-", dir=cache / digest) as work:
        folder = Path(work) / pack_id
        for name, content in files:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        try:
            folder.rename(destination)
        except OSError:  # another process of this worker unpacked it first
            if not destination.is_dir():
                raise
            shutil.rmtree(folder, ignore_errors=True)
    return destination


__all__ = ["MAX_PACK_BYTES", "PackDigests", "pack_archive", "pack_digest", "unpack_archive"]
