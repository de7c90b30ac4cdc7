"""Shared fixtures: real public-domain and sample faces, one analyzer per session."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from core.config import Settings
from core.faces.analyzer import DlibAnalyzer, Face
from core.faces.profile import FaceProfile, enroll
from core.media.images import RGBImage, load_image
from core.media.video import encode

REPO = Path(__file__).resolve().parents[1]


def _sample_dir() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(
            "insightface's sample images are missing: run `make setup` "
            "(it installs insightface with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "images"


@pytest.fixture(scope="session")
def samples() -> Path:
    return _sample_dir()


@pytest.fixture(scope="session")
def astronaut() -> RGBImage:
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_file(tmp_path_factory: pytest.TempPathFactory, astronaut: RGBImage) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("faces") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


@pytest.fixture(scope="session")
def group_photo(samples: Path) -> RGBImage:
    return load_image(samples / "t1.jpg")


@pytest.fixture(scope="session")
def hanks(samples: Path) -> RGBImage:
    return load_image(samples / "Tom_Hanks_54745.png")


@pytest.fixture(scope="session")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def astronaut_face(analyzer: DlibAnalyzer, astronaut: RGBImage) -> Face:
    return analyzer.detect(astronaut)[0]


@pytest.fixture(scope="session")
def selfie_profile(analyzer: DlibAnalyzer, group_photo: RGBImage) -> FaceProfile:
    """A second person (the third from the left in the group photo) as an enrolled face."""
    selfie = np.ascontiguousarray(group_photo[200:520, 380:650])
    return enroll(selfie, analyzer, Settings())


def make_video(path: Path, frames: Iterable[RGBImage], fps: float = 12.0) -> Path:
    """Write real H.264 MP4 test footage."""
    encode(frames, path, fps=fps)
    return path


def run_facecast(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed command in a real process, with its own data folder (one smoke test
    per command family; the rest use :func:`invoke_facecast`)."""
    # A wide terminal, so help and tables do not wrap words the tests look for.
    env = {**os.environ, "FACECAST_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("FACECAST_CLIPS_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "facecast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=REPO,
    )


def invoke_facecast(data_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The same command line in this process, through typer's test runner: the same code,
    exit codes and output, without paying a fresh interpreter's imports per call."""
    from typer.testing import CliRunner

    from facecast import cli

    widths = cli.out.width, cli.err.width
    cli.out.width = cli.err.width = 200  # as COLUMNS=200 does for a real process
    try:
        result = CliRunner().invoke(
            cli.app,
            [str(a) for a in args],
            env={"FACECAST_DATA_DIR": str(data_dir), "FACECAST_CLIPS_DIR": None, "COLUMNS": "200"},
            catch_exceptions=False,
        )
    finally:
        cli.out.width, cli.err.width = widths
    return subprocess.CompletedProcess(
        ["facecast", *map(str, args)], result.exit_code, result.stdout, result.stderr
    )


def assert_user_error(run: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2 and exactly one line on stderr, naming the problem; no traceback."""
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0]


POSTGRES_ADMIN = os.environ.get(
    "FACECAST_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _postgres_reachable() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings with a real, empty database: SQLite in a temp dir, and PostgreSQL on
    127.0.0.1 when one answers (a fresh database, dropped afterwards)."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        yield Settings(data_dir=data, bundled_clips_dir=REPO / "clips")
        return
    if not await _postgres_reachable():
        pytest.skip(f"no PostgreSQL answering at {POSTGRES_ADMIN}")
    import uuid

    import asyncpg

    name = f"facecast_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield Settings(
            data_dir=data, bundled_clips_dir=REPO / "clips", database_url=f"{base}/{name}"
        )
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def jpeg(image: RGBImage, quality: int = 92) -> bytes:
    """A picture as the JPEG a phone would upload."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    """`facecast serve` as an operator starts it, with these FACECAST_* settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "facecast", "serve", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def stop_serve(process: subprocess.Popen[str], caused: Iterable[str] = ()) -> str:
    """SIGTERM, then insist on a clean exit without a traceback, but in the log records
    of errors a test caused on purpose (records mentioning one of ``caused``, each
    expected exactly once); returns stdout."""
    import asyncio
    import signal

    process.send_signal(signal.SIGTERM)
    try:
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, err
    import re

    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", err)
    for cause in caused:
        found = [r for r in records if cause in r and "Traceback" in r]
        assert len(found) == 1, (cause, err)
    unexpected = [r for r in records if not any(cause in r for cause in caused)]
    assert "Traceback" not in "\n".join(unexpected), err
    return out


# -- clips with sound ------------------------------------------------------------------------

TONE_AT = 1.0  # the sound test video is silent until a 440 Hz tone starts here (seconds)
FLASH_ROWS = 10  # ...and its top rows turn white at that moment, for the eye to see


def sound_video(path: Path, astronaut: RGBImage, face: Face, *, seconds: float = 2.0) -> Path:
    """A 12 fps video of the astronaut (a pan) with a sound track: silence, then a tone
    from TONE_AT on, when a white bar appears at the top of the picture."""
    from core.media.video import ffmpeg_exe
    from core.packs.camera import animate_still

    focus = (float(face.landmarks[:, 0].mean()), float(face.landmarks[:, 1].mean()))
    frames, _ = animate_still(
        astronaut, "pan", seconds=seconds, fps=12, size=(400, 300), focus=focus
    )
    marked = []
    for index, frame in enumerate(frames):
        if index / 12 >= TONE_AT - 1e-9:
            frame = frame.copy()
            frame[:FLASH_ROWS] = 255
        marked.append(frame)
    silent = make_video(path.with_name(path.stem + "-silent.mp4"), marked)
    tone = f"aevalsrc=exprs='if(gte(t\\,{TONE_AT})\\,0.5*sin(2*PI*440*t)\\,0)':s=44100:d={seconds}"
    subprocess.run(
        [
            *(ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(silent)),
            *("-f", "lavfi", "-i", tone, "-c:v", "copy", "-c:a", "aac", str(path)),
        ],
        check=True,
        timeout=60,
    )
    return path


def audio_of(path: Path) -> tuple[float, float] | None:
    """(when the sound first gets loud, how long the audio track lasts) in seconds from the
    file's start, or None when the file has no audio track."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        duration = float(stream.duration * stream.time_base)
        onset = None
        for frame in container.decode(stream):
            loud = np.flatnonzero(np.abs(frame.to_ndarray()).max(axis=0) > 0.1)
            if loud.size and onset is None:
                onset = float(frame.time or 0.0) + loud[0] / frame.sample_rate
        assert onset is not None, f"{path.name} is silent"
        return onset, duration


CLIP_START = 0.55  # the sound clip is cut from here: its first frame is the one at 7/12 s
CLIP_TONE_AT = TONE_AT - 7 / 12  # so the tone starts this long into the clip


@pytest.fixture(scope="session")
def sound_source(
    tmp_path_factory: pytest.TempPathFactory, astronaut: RGBImage, astronaut_face: Face
) -> Path:
    """:func:`sound_video`, made once."""
    return sound_video(tmp_path_factory.mktemp("sound") / "tone.mp4", astronaut, astronaut_face)


@pytest.fixture(scope="session")
def sound_clip_folder(
    tmp_path_factory: pytest.TempPathFactory, analyzer: DlibAnalyzer, sound_source: Path
) -> Path:
    """A clip pack ``tone`` with sound, cut from :func:`sound_video` at CLIP_START. Tests
    copy it into their own clips folder."""
    from core.packs.build import ClipSource, build_clip

    data = tmp_path_factory.mktemp("sound-clip")
    settings = Settings(data_dir=data, bundled_clips_dir=REPO / "clips")
    source = ClipSource(
        sound_source, "tone", title="Tone", start=CLIP_START, max_side=320, licence="CC0-1.0"
    )
    return build_clip(source, settings, analyzer).folder


def flash_at(path: Path) -> float:
    """When the white bar of :func:`sound_video` first shows in a video (seconds from its
    first frame, by the frame rate), for checking sound against picture."""
    from core.media.video import probe_video, read_video

    fps = probe_video(path).fps
    for index, frame in enumerate(read_video(path)):
        if frame[: FLASH_ROWS // 2].mean() > 235:
            return index / fps
    raise AssertionError(f"{path.name} never flashes")
