"""What crosses to a worker: JSON with a short list of types, never code, never a secret."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.faces.liveness import LivenessLimits, LivenessOrder, LivenessReport, liveness_order
from core.jobs import wire
from core.jobs.registry import name_of
from core.render.tasks import RenderConfig, RenderOrder


def _order(tmp_path: Path, profile: bytes) -> RenderOrder:
    settings = Settings(
        data_dir=tmp_path,
        secret_key=SecretStr("the-master-secret"),
        telegram_token=SecretStr("123:telegram-token"),
        database_url="postgresql+asyncpg://app:db-password@db/facecast",
    )
    return RenderOrder(
        kind="clip",
        target="astronaut-pan",
        profile=profile,
        output=str(tmp_path / "out.mp4"),
        config=RenderConfig.of(settings),
        packs=(("astronaut-pan", "ab" * 32),),
    )


def test_an_order_travels_as_json_without_secrets_and_comes_back_equal(tmp_path: Path) -> None:
    order = _order(tmp_path, bytes(range(256)) * 400)  # 100 kB: cut out into a blob
    text, blobs = wire.dumps((order,))
    for secret in ("the-master-secret", "telegram-token", "db-password"):
        assert secret not in text
    assert len(text) < 4000  # the profile is not in the message itself...
    assert list(blobs.values()) == [order.profile]  # ...but beside it
    assert wire.blob_names(text) == list(blobs)
    assert wire.loads(text, blobs) == (order,)


def test_small_bytes_stay_inline(tmp_path: Path) -> None:
    order = _order(tmp_path, b"\x00\x01tiny")
    text, blobs = wire.dumps(order)
    assert blobs == {}
    assert wire.loads(text) == order


def test_an_unlisted_type_neither_leaves_nor_arrives(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Sneaky:
        command: str

    with pytest.raises(TypeError, match="may not travel"):
        wire.dumps(Sneaky("rm -rf /"))
    with pytest.raises(TypeError, match="may not travel"):
        wire.dumps(object())
    forged = json.dumps({"~type": "os.system", "fields": {"command": "true"}})
    with pytest.raises(wire.WireError, match="unknown type"):
        wire.loads(forged)


def test_a_missing_blob_is_an_error_not_a_crash(tmp_path: Path) -> None:
    text, _ = wire.dumps(_order(tmp_path, b"x" * (wire.INLINE_BYTES + 1)))
    with pytest.raises(wire.WireError, match="missing"):
        wire.loads(text, {})


def test_a_liveness_check_travels_and_is_a_registered_task() -> None:
    """/verify's check runs on a worker like a render: its order and report cross as JSON."""
    order = LivenessOrder(
        video=b"\x1aE\xdf\xa3" + bytes(wire.INLINE_BYTES),  # a large capture: a blob
        suffix=".webm",
        profile=b"profile",
        challenge="blink-twice",
        limits=LivenessLimits(identity_threshold=0.5, min_turn_degrees=10.0),
    )
    text, blobs = wire.dumps((order,))
    assert list(blobs.values()) == [order.video]
    assert wire.loads(text, blobs) == (order,)
    report = LivenessReport(passed=True, reason="ok", challenge="left-right", blinks=2)
    assert wire.loads(*wire.dumps(report)) == report
    assert name_of(liveness_order) == "liveness"
