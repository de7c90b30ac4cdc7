"""`facecast serve` as an operator runs it: a real process, a real port, a real signal."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from ..conftest import free_port, start_serve


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_then_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    process = start_serve(
        {"FACECAST_DATA_DIR": str(tmp_path / "data"), "FACECAST_WORKERS": "1"}, port
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    health = json.load(r)
            except OSError:
                time.sleep(0.3)
        assert health == {"status": "ok", "queue": 0}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"FaceCast" in page.read()
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err
