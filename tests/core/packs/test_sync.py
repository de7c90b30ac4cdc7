"""Packs travel to workers by content: same files, same digest; other files, refused."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from core.errors import ClipNotFound
from core.packs.library import load_clip
from core.packs.sync import PackDigests, pack_archive, pack_digest, unpack_archive

from ...conftest import REPO


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    return Path(
        shutil.copytree(REPO / "clips" / "astronaut-pan", tmp_path / "src" / "astronaut-pan")
    )


def test_a_pack_arrives_whole_and_usable(pack: Path, tmp_path: Path) -> None:
    digest, archive = pack_archive(pack)
    assert digest == pack_digest(pack) == pack_digest(REPO / "clips" / "astronaut-pan")
    folder = unpack_archive(archive, "astronaut-pan", digest, tmp_path / "cache")
    assert folder == tmp_path / "cache" / digest / "astronaut-pan"
    assert pack_digest(folder) == digest
    clip = load_clip(folder)
    assert clip.load_track().frames == clip.manifest.frames
    # Unpacked once: a second arrival of the same digest reuses the folder.
    assert unpack_archive(b"", "astronaut-pan", digest, tmp_path / "cache") == folder


def test_changed_content_changes_the_digest(pack: Path) -> None:
    digests = PackDigests()
    before = digests.of(pack)
    assert digests.of(pack) == before
    (pack / "clip.toml").write_text((pack / "clip.toml").read_text() + "\n# edited\n")
    assert digests.of(pack) != before


def test_an_archive_that_is_not_what_was_ordered_is_refused(pack: Path, tmp_path: Path) -> None:
    digest, _ = pack_archive(pack)
    (pack / "clip.toml").write_text((pack / "clip.toml").read_text() + "\n# stale\n")
    _, stale = pack_archive(pack)
    with pytest.raises(ClipNotFound, match="other content"):
        unpack_archive(stale, "astronaut-pan", digest, tmp_path / "cache")
    assert not (tmp_path / "cache" / digest / "astronaut-pan").exists()
    with pytest.raises(ClipNotFound, match="damaged"):
        unpack_archive(b"not a zip", "astronaut-pan", digest, tmp_path / "cache")


def test_names_that_climb_out_of_the_cache_are_ignored(pack: Path, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escaped.txt", b"gotcha")
    with pytest.raises(ClipNotFound):
        unpack_archive(buffer.getvalue(), "astronaut-pan", "0" * 64, tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()
