"""`facecast serve` as an operator runs it: a real process, a real port, a real signal."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from core.media.images import RGBImage

from ..conftest import assert_user_error, free_port, jpeg, start_serve


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_then_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    process = start_serve(
        # A narrow terminal: the startup banner still comes as one line.
        {"FACECAST_DATA_DIR": str(tmp_path / "data"), "FACECAST_WORKERS": "1", "COLUMNS": "60"},
        port,
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
        assert health is not None
        assert (health["status"], health["queue"], health["workers"]) == ("ok", 0, 1)
        assert health["shared_state"] == "local"  # no Redis named: limits stay in the process
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert b"FaceCast" in page.read()
        process.send_signal(stop)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    (banner,) = [line for line in out.splitlines() if f"http://127.0.0.1:{port}/" in line]
    assert "1 render worker" in banner
    assert banner.endswith("Ctrl+C stops it.")
    assert "Traceback" not in err


def _serve_refuses(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`facecast serve` with these settings, which must end at once with a user error."""
    env = {"FACECAST_DATA_DIR": str(tmp_path / "data"), **settings}
    process = start_serve(env, free_port())
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize(
    ("name", "value", "form"),
    [
        ("DISCORD_GUILD_IDS", "12x", "whole numbers separated by commas, like 123,456"),
        ("DISCORD_GUILD_IDS", "[123,", "whole numbers separated by commas, like 123,456"),
        ("WORKERS", "lots", "a whole number at least 1 and at most 64"),
        ("ENGINE", "magic", "one of classic, insightface"),
    ],
)
def test_serve_names_a_bad_setting_in_one_line(
    tmp_path: Path, name: str, value: str, form: str
) -> None:
    run = _serve_refuses(tmp_path, **{f"FACECAST_{name}": value})
    assert_user_error(run, f"FACECAST_{name}={value!r}", form)


def test_guild_ids_may_be_comma_separated(tmp_path: Path) -> None:
    """123 and 123,456 are accepted as they are: only the bad worker count is reported."""
    for ids in ("123", "123,456", " 123 , 456 ", "[123, 456]"):
        run = _serve_refuses(tmp_path, FACECAST_DISCORD_GUILD_IDS=ids, FACECAST_WORKERS="0")
        assert_user_error(run, "FACECAST_WORKERS='0'", "at least 1")
        assert "GUILD" not in run.stderr


def test_a_shared_state_redis_that_does_not_answer_stops_serve_in_one_line(
    tmp_path: Path,
) -> None:
    run = _serve_refuses(tmp_path, FACECAST_STATE_URL="redis://:hunter2@127.0.0.1:1/0")
    assert_user_error(run, "Redis at 127.0.0.1:1/0 does not answer")
    assert "hunter2" not in run.stdout + run.stderr


async def _healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError("facecast serve did not come up")


async def test_sigterm_tells_queued_users_and_finishes_running_renders(
    tmp_path: Path, astronaut: RGBImage
) -> None:
    port = free_port()
    grace = 8.0
    process = start_serve(
        {
            "FACECAST_DATA_DIR": str(tmp_path / "data"),
            "FACECAST_WORKERS": "1",
            "FACECAST_SHUTDOWN_GRACE": str(grace),
        },
        port,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await _healthy(port)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(f"{base}/") as page:  # the page issues the session
                assert page.status == 200
            selfie = {"text": "", "image": base64.b64encode(jpeg(astronaut)).decode()}
            async with client.post(f"{base}/api/message", json=selfie) as enrolled:
                assert "Got your face" in (await enrolled.json())["replies"][0]["text"]
            running = await client.ws_connect(f"{base}/api/ws")
            queued = await client.ws_connect(f"{base}/api/ws")
            await running.send_json({"text": "/clip astronaut-pan"})
            first = await running.receive_json(timeout=30)
            assert first["type"] == "progress"
            await queued.send_json({"text": "/meme spin"})
            waiting = await queued.receive_json(timeout=30)
            assert "queue" in waiting["text"]

            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            told = await queued.receive_json(timeout=3)  # at once, not after the grace
            assert told["type"] == "text"
            assert "shutting down" in told["text"]
            assert time.monotonic() - stopped < 3

            replies = []
            while True:
                frame = await running.receive(timeout=grace + 10)
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                replies.append(json.loads(frame.data))
            assert [r for r in replies if r["type"] == "media"]  # finished within the grace
            await running.close()
            await queued.close()
        _, err = await asyncio.to_thread(process.communicate, timeout=grace + 15)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert took < grace + 6, took


def test_serve_says_when_the_broker_does_not_answer(tmp_path: Path) -> None:
    pytest.importorskip("taskiq_redis", reason="the scale extra is not installed")
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    run = _serve_refuses(tmp_path, FACECAST_BROKER_URL=url)
    assert_user_error(run, "FACECAST_BROKER_URL", "no Redis answers at 127.0.0.1")
    assert "hunter2-secret" not in run.stderr + run.stdout
