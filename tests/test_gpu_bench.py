"""benchmarks/gpu_bench.py says in one line, with exit code 2, that it has no models to time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_without_model_files_it_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACECAST_DATA_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "gpu_bench.py", "--models", str(tmp_path / "models")],
        cwd=REPO / "benchmarks",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    (line,) = run.stdout.splitlines()
    assert f"model files absent in {tmp_path / 'models'}" in line
    assert "inswapper_128.onnx (missing)" in line
    assert not run.stderr
