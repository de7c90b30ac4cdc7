"""The neural engine's real loading, alignment, session and paste-back code, run on tiny
ONNX graphs built here with the same input/output names and shapes as the real models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.config import Settings
from core.engines.base import SwapSequence
from core.engines.models import ModelStore, load_registry, providers, session, sha256_of
from core.engines.neural import InSwapper, alignment
from core.engines.registry import make_identity, make_swapper
from core.errors import ModelUnavailable
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import enroll
from core.media.images import RGBImage
from core.media.video import read_video
from core.packs.library import ClipLibrary
from core.render.clip import render_clip

from ...conftest import REPO


def _save(graph: onnx.GraphProto, path: Path) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return sha256_of(path)


def tiny_arcface(path: Path) -> str:
    """(1,3,112,112) -> (1,512): mean colour through a fixed projection."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(3, 512)).astype(np.float32), "proj")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "proj"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes,
        "w600k_r50",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        initializer=[weights],
    )
    return _save(graph, path)


def tiny_inswapper(path: Path) -> str:
    """target (1,3,128,128) + source (1,512) -> (1,3,128,128): the target's colours
    inverted (plainly visible), plus zero times the identity's code; the 512x512 "emap"
    is the last initialiser, as in the real model."""
    one = numpy_helper.from_array(np.ones((1,), np.float32), "one")
    zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
    emap = numpy_helper.from_array(np.eye(512, dtype=np.float32), "emap")
    nodes = [
        helper.make_node("Sub", ["one", "target"], ["inverted"]),
        helper.make_node("MatMul", ["source", "emap"], ["code"]),
        helper.make_node("ReduceMean", ["code"], ["level"], keepdims=0),
        helper.make_node("Mul", ["level", "zero"], ["nothing"]),
        helper.make_node("Add", ["inverted", "nothing"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "inswapper_128",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, ["n", 3, 128, 128]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, 128, 128])],
        initializer=[one, zero, emap],
    )
    return _save(graph, path)


def _constant_graph(
    name: str, input_name: str, input_shape: list[int], outputs: dict[str, np.ndarray]
) -> onnx.GraphProto:
    """Outputs fixed tensors, but reads its input (times zero) like a real network."""
    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    infos = []
    for output, value in outputs.items():
        initializers.append(numpy_helper.from_array(value.astype(np.float32), f"{output}_value"))
        nodes.append(helper.make_node("Add", [f"{output}_value", "nothing"], [output]))
        infos.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, list(value.shape)))
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)]
    return helper.make_graph(nodes, name, inputs, infos, initializer=initializers)


def tiny_scrfd(path: Path, box: tuple[float, float, float, float]) -> str:
    """det_10g's nine outputs (scores, box distances, key points at strides 8/16/32) with one
    confident anchor whose box is ``box`` in the 640 px input."""
    outputs: dict[str, np.ndarray] = {}
    cells = {8: 80, 16: 40, 32: 20}
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    gx, gy = round(centre[0] / 32), round(centre[1] / 32)
    anchor = (gy * 20 + gx) * 2
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride, count in cells.items():
            outputs[f"{kind}_{stride}"] = np.zeros((count * count * 2, width), np.float32)
    outputs["score_32"][anchor, 0] = 0.93
    cx, cy = gx * 32, gy * 32
    outputs["bbox_32"][anchor] = np.array([cx - box[0], cy - box[1], box[2] - cx, box[3] - cy]) / 32
    graph = _constant_graph("det_10g", "input.1", [1, 3, 640, 640], outputs)
    return _save(graph, path)


def tiny_1k3d68(path: Path, normalised: np.ndarray) -> str:
    """1k3d68's (1, 3309) output: 1103 points of which the last 68 are the landmarks, in
    [-1, 1] crop coordinates."""
    values = np.zeros((1103, 3), np.float32)
    values[-68:, :2] = normalised
    graph = _constant_graph("1k3d68", "data", [1, 3, 192, 192], {"fc1": values.reshape(1, -1)})
    return _save(graph, path)


def _insightface_crop(box: tuple[int, int, int, int]) -> np.ndarray:
    """InsightFace's landmark crop: centred on the box, 1.5 times its longer side, 192 px."""
    x0, y0, x1, y1 = box
    scale = 192 / (max(x1 - x0, y1 - y0) * 1.5)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[scale, 0, 96 - cx * scale], [0, scale, 96 - cy * scale]])


@pytest.fixture(scope="module")
def astronaut_truth(
    analyzer: DlibAnalyzer, astronaut: RGBImage
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Where dlib sees the astronaut's face: what the tiny SCRFD and 1k3d68 will report."""
    face = analyzer.detect(astronaut)[0]
    return face.bbox, face.landmarks


@pytest.fixture(scope="module")
def neural(
    tmp_path_factory: pytest.TempPathFactory,
    astronaut_truth: tuple[tuple[int, int, int, int], np.ndarray],
) -> Settings:
    """Settings for the neural engine over a models folder of tiny graphs and a registry
    that lists their hashes."""
    root = tmp_path_factory.mktemp("neural")
    models = root / "models"
    box, landmarks = astronaut_truth
    in_canvas = tuple(float(v) * 640 / 512 for v in box)  # the astronaut is 512 px square
    crop = _insightface_crop(box)
    in_crop = np.hstack([landmarks, np.ones((68, 1))]) @ crop.T
    hashes = {
        "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af": tiny_inswapper(
            models / "inswapper_128.onnx"
        ),
        "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43": tiny_arcface(
            models / "buffalo_l" / "w600k_r50.onnx"
        ),
        "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91": tiny_scrfd(
            models / "buffalo_l" / "det_10g.onnx",
            in_canvas,  # type: ignore[arg-type]
        ),
        "df5c06b8a0c12e422b2ed8947b8869faa4105387f199c477af038aa01f9a45cc": tiny_1k3d68(
            models / "buffalo_l" / "1k3d68.onnx", in_crop / 96 - 1
        ),
    }
    registry = (REPO / "core" / "engines" / "models.toml").read_text()
    for real, tiny in hashes.items():
        registry = registry.replace(real, tiny)
    (root / "registry.toml").write_text(registry)
    return Settings(
        data_dir=root / "data",
        engine="insightface",
        models_dir=models,
        models_registry=root / "registry.toml",
        bundled_clips_dir=REPO / "clips",
    )


def test_the_registry_describes_every_model() -> None:
    registry = load_registry()
    assert {"inswapper_128", "w600k_r50", "det_10g", "2d106det", "genderage"} <= set(registry)
    for spec in registry.values():
        assert len(spec.sha256) == 64
        assert "non-commercial" in spec.licence
        assert spec.source.startswith("https://")


def test_the_cpu_provider_is_used_without_cuda(neural: Settings) -> None:
    import onnxruntime as ort

    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # this machine
    assert providers() == ["CPUExecutionProvider"]
    opened = session(neural.resolved_models_dir / "inswapper_128.onnx")
    assert opened.get_providers() == ["CPUExecutionProvider"]


def test_a_wrong_hash_is_refused_and_a_missing_model_says_what_to_do(
    neural: Settings, tmp_path: Path
) -> None:
    registry = load_registry(neural.models_registry)  # type: ignore[arg-type]
    broken = tmp_path / "models"
    (broken / "buffalo_l").mkdir(parents=True)
    (broken / "inswapper_128.onnx").write_bytes(b"not the model")
    store = ModelStore(broken, registry)
    assert store.state("inswapper_128").status == "wrong hash"
    with pytest.raises(ModelUnavailable, match="sha256 differs"):
        store.require("inswapper_128")
    with pytest.raises(ModelUnavailable, match="facecast models"):
        store.require("w600k_r50")
    with pytest.raises(ModelUnavailable, match="sha256 differs"):
        InSwapper(store)


def test_fetch_fails_clearly_when_offline(tmp_path: Path) -> None:
    spec = load_registry()["inswapper_128"].model_copy(
        update={"url": "http://127.0.0.1:9/inswapper_128.onnx"}
    )
    store = ModelStore(tmp_path, {"inswapper_128": spec})
    with pytest.raises(ModelUnavailable, match=r"Could not download.*offline"):
        store.fetch("inswapper_128", timeout=5)
    assert not (tmp_path / "inswapper_128.onnx").exists()


def test_the_insightface_analyzer_finds_the_face_and_its_68_points(
    neural: Settings,
    astronaut: RGBImage,
    astronaut_truth: tuple[tuple[int, int, int, int], np.ndarray],
) -> None:
    from core.engines.neural import InsightFaceAnalyzer
    from core.engines.registry import make_analyzer

    analyzer = make_analyzer(neural)
    assert isinstance(analyzer, InsightFaceAnalyzer)
    faces = analyzer.detect(astronaut, embed=True)
    assert len(faces) == 1
    box, landmarks = astronaut_truth
    assert np.abs(np.array(faces[0].bbox) - np.array(box)).max() <= 2
    assert np.linalg.norm(faces[0].landmarks - landmarks, axis=1).max() < 1.5
    assert faces[0].score == pytest.approx(0.93, abs=1e-3)
    assert faces[0].embedding is not None
    assert faces[0].embedding.shape == (512,)
    assert abs(faces[0].quality.yaw) < 10


def test_enrolment_keeps_the_arcface_identity(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    profile = enroll(astronaut, analyzer, neural, identity=make_identity(neural))
    assert profile.arcface is not None
    assert profile.arcface.shape == (512,)
    assert abs(float(np.linalg.norm(profile.arcface)) - 1.0) < 1e-4
    from core.faces.profile import FaceProfile

    assert np.array_equal(FaceProfile.from_bytes(profile.to_bytes()).arcface, profile.arcface)


def test_paste_back_changes_only_the_face(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    profile = enroll(astronaut, analyzer, neural, identity=make_identity(neural))
    swapper = make_swapper(neural)
    target = analyzer.detect(astronaut)[0].landmarks
    result = swapper.swap(profile, astronaut, target)
    changed = np.abs(result.astype(int) - astronaut).max(axis=2) > 0
    # The footprint of the 128 px aligned crop in the picture: all changes lie inside it.
    matrix = alignment(target, 128)
    import cv2

    footprint = cv2.warpAffine(
        np.full((128, 128), 255, np.uint8),
        cv2.invertAffineTransform(matrix),
        (astronaut.shape[1], astronaut.shape[0]),
    )
    assert changed.sum() > 2000
    assert not (changed & (footprint == 0)).any()
    # The face itself took the model's output (the tiny model inverts colours).
    nose = target[30].round().astype(int)
    assert (
        abs(int(result[nose[1], nose[0]].mean()) - (255 - int(astronaut[nose[1], nose[0]].mean())))
        < 40
    )


def test_a_clip_renders_end_to_end_with_the_neural_engine(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    profile = enroll(astronaut, analyzer, neural, identity=make_identity(neural))
    clip = ClipLibrary(neural).get("astronaut-pan")  # made with the classic engine
    frames = list(render_clip(profile, clip, make_swapper(neural), label=False))
    originals = list(read_video(clip.media))
    assert len(frames) == len(originals) == 72
    assert all(not np.array_equal(a, b) for a, b in zip(frames[::12], originals[::12], strict=True))


def test_clip_frames_go_through_in_batches_with_the_same_result(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    profile = enroll(astronaut, analyzer, neural, identity=make_identity(neural))
    swapper = make_swapper(neural)
    assert isinstance(swapper, InSwapper)
    assert swapper.batch == 8  # the model's batch dimension is symbolic
    clip = ClipLibrary(neural).get("astronaut-shake")
    frames = list(read_video(clip.media))[:11]
    targets = list(clip.load_track().landmarks[:11])
    together = swapper.swap_batch(profile, frames, targets)
    one_by_one = [swapper.swap(profile, f, t) for f, t in zip(frames, targets, strict=True)]
    assert all(np.array_equal(a, b) for a, b in zip(together, one_by_one, strict=True))


def test_a_faded_frame_shows_that_share_of_the_neural_swap(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    # (a clip's face turning away: see core.faces.tracking.turn_strength)
    profile = enroll(astronaut, analyzer, neural, identity=make_identity(neural))
    swapper = make_swapper(neural)
    clip = ClipLibrary(neural).get("astronaut-shake")
    frame = next(iter(read_video(clip.media)))
    target = clip.load_track().landmarks[0]
    full = swapper.swap(profile, frame, target)
    sequence = SwapSequence()
    sequence.fade = 0.25
    faded = swapper.swap(profile, frame, target, sequence=sequence)
    expected = frame + 0.25 * (full.astype(np.float32) - frame)
    assert np.abs(faded - expected).max() <= 1.0
    assert np.abs(full.astype(np.float32) - frame).max() > 50  # the full swap did change it


def test_a_classic_profile_is_refused_by_the_neural_swapper(
    neural: Settings, analyzer: DlibAnalyzer, astronaut: RGBImage
) -> None:
    profile = enroll(astronaut, analyzer, neural)  # no ArcFace identity
    with pytest.raises(ModelUnavailable, match="send your selfie again"):
        make_swapper(neural).swap(profile, astronaut, analyzer.detect(astronaut)[0].landmarks)


def _facecast(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FACECAST_MODELS_DIR": str(settings.models_dir),
        "FACECAST_MODELS_REGISTRY": str(settings.models_registry),
        "FACECAST_DATA_DIR": str(settings.data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO,
    )


def test_models_command_lists_states_and_the_licence(neural: Settings) -> None:
    run = _facecast(neural, "models")
    assert run.returncode == 0, run.stderr
    assert "present" in run.stdout
    assert "missing" in run.stdout
    assert "non-commercial" in run.stdout


def test_swap_command_with_the_neural_engine(neural: Settings, tmp_path: Path) -> None:
    out = tmp_path / "neural.png"
    selfie = str(REPO / "clips" / "examples" / "astronaut.jpg")
    run = _facecast(
        neural,
        "swap",
        "--engine",
        "insightface",
        "--face",
        selfie,
        "--target",
        selfie,
        "-o",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert out.is_file()


def test_the_neural_analyzer_is_its_own_identity_embedder(
    neural: Settings, astronaut: RGBImage
) -> None:
    from core.engines.registry import make_analyzer

    analyzer = make_analyzer(neural)
    identity = make_identity(neural, analyzer)
    assert identity is analyzer  # no second ArcFace model, no second run at enrolment
    profile = enroll(astronaut, analyzer, neural, identity=identity)
    assert profile.arcface is not None
    assert profile.embedding is not None
    assert np.array_equal(profile.arcface, profile.embedding)
