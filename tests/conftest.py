"""Shared fixtures: real public-domain and sample faces, one analyzer per session."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from core import DlibAnalyzer, Face, FaceProfile, RGBImage, Settings, encode, enroll, load_image

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
