"""Shared fixtures: real public-domain and sample faces, one analyzer per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from core import DlibAnalyzer, RGBImage, Settings, load_image

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
