"""Promises about how FaceCast is packaged and layered."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest


def test_only_the_headless_opencv_is_installed() -> None:
    # opencv-python and opencv-python-headless both install cv2/; with both, whichever was
    # installed last wins and uninstalling one breaks the other.
    importlib.metadata.version("opencv-python-headless")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("opencv-python")


def test_core_imports_no_chat_library_and_no_adapter() -> None:
    code = (
        "import sys, core.engines.classic, core.faces.profile, core.media.video, core.render.tasks;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'bots', 'telegram', 'discord', 'aiohttp', 'onnxruntime', 'insightface'});"
        "print(','.join(bad))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert run.stdout.strip() == ""


def test_the_wheel_lists_every_package_and_carries_the_clips() -> None:
    """pyproject.toml lists the packages (so clips/ can travel as core.packs.bundled): a new
    package folder must join the list, and every bundled pack must match package data."""
    import fnmatch
    import tomllib

    from .conftest import REPO

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in ("core", "bots", "facecast")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert set(config["packages"]) == on_disk | {"core.packs.bundled"}
    assert config["package-dir"] == {"core.packs.bundled": "clips"}
    patterns = config["package-data"]["core.packs.bundled"]
    tracked = subprocess.run(
        ["git", "ls-files", "clips"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    for name in tracked:
        relative = name.removeprefix("clips/")
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), name
        assert (REPO / name).stat().st_size < 2_000_000, name  # a small wheel


def test_a_missing_extra_is_one_clear_line() -> None:
    from core.errors import FaceCastError
    from facecast.app import require

    require("json", "telegram", "FACECAST_TELEGRAM_TOKEN is set")  # present: nothing
    with pytest.raises(FaceCastError) as caught:
        require("no_such_module_here", "telegram", "FACECAST_TELEGRAM_TOKEN is set")
    assert caught.value.message == (
        "FACECAST_TELEGRAM_TOKEN is set, but no_such_module_here is not installed: "
        "pip install 'facecast[telegram]'."
    )
