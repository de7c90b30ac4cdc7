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
