"""Content Credentials (C2PA) on every output kind, and what `check_file` says of files
signed by us, by someone else, or by no one."""

from __future__ import annotations

import json
from pathlib import Path

import c2pa
import pytest

from core.config import Settings
from core.engines.classic import ClassicSwapper
from core.faces.analyzer import DlibAnalyzer
from core.faces.profile import FaceProfile
from core.media.images import RGBImage, load_image, save_image
from core.media.provenance import (
    SOURCE_TYPE,
    Marks,
    ProvenanceUnavailable,
    check_manifest,
    generate_identity,
    sign_file,
)
from core.media.video import read_video
from core.packs.library import ClipLibrary
from core.render.memes import MemeLibrary, render_meme_to_file
from core.render.tasks import clip_to_file
from core.service.provenance import check_file, load_marks

from ...conftest import REPO


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Marks:
    data = tmp_path_factory.mktemp("deployment")
    return load_marks(Settings(data_dir=data, bundled_clips_dir=REPO / "clips"))


@pytest.fixture(scope="module")
def outputs(
    tmp_path_factory: pytest.TempPathFactory, marks: Marks, selfie_profile: FaceProfile
) -> dict[str, Path]:
    """One output of each kind FaceCast writes, made the way the renders make them."""
    folder = tmp_path_factory.mktemp("outputs")
    settings = Settings(data_dir=folder / "data", bundled_clips_dir=REPO / "clips")
    swapper = ClassicSwapper()
    clip = ClipLibrary(settings).get("astronaut-pan")
    made = {
        "mp4": clip_to_file(
            selfie_profile, clip, swapper, folder / "clip.mp4", settings, size=240, marks=marks
        ).path,
        "gif": render_meme_to_file(
            selfie_profile,
            MemeLibrary(settings).get("speed-lines"),
            settings,
            swapper,
            folder / "meme.gif",
            marks=marks,
        ).path,
    }
    still = next(iter(read_video(made["mp4"])))
    for kind in ("png", "jpg"):
        save_image(still, folder / f"still.{kind}", sign=marks.sign)
        made[kind] = folder / f"still.{kind}"
    return made


@pytest.mark.parametrize("kind", ["mp4", "gif", "png", "jpg"])
def test_every_output_kind_carries_a_valid_c2pa_manifest(
    outputs: dict[str, Path], marks: Marks, kind: str
) -> None:
    path = outputs[kind]
    with c2pa.Reader(str(path)) as reader:
        # Without our authority as a trust anchor the signature is still checked: Valid.
        assert reader.get_validation_state() == "Valid"
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    assert manifest["claim_generator_info"][0]["name"] == "FaceCast"
    actions = [
        action
        for assertion in manifest["assertions"]
        if assertion["label"].startswith("c2pa.actions")
        for action in assertion["data"]["actions"]
    ]
    assert any(
        a["action"] == "c2pa.created" and a["digitalSourceType"] == SOURCE_TYPE for a in actions
    )
    # Nothing about a person: no author, no identity, only what was done and by what.
    labels = {assertion["label"].split(".v")[0] for assertion in manifest["assertions"]}
    assert labels <= {"c2pa.actions", "c2pa.hash.data", "c2pa.hash.bmff", "c2pa.hash.boxes"}
    assert "author" not in json.dumps(manifest).lower()
    assert "thumbnail" not in json.dumps(manifest).lower()  # no second copy of the face
    assert len(json.dumps(store)) < 8_000
    check = check_manifest(path, marks.trust_anchor())
    assert (check.present, check.valid, check.ours, check.synthetic) == (True, True, True, True)


def test_signed_videos_still_play_and_stream(outputs: dict[str, Path]) -> None:
    data = outputs["mp4"].read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart survives signing
    assert len(list(read_video(outputs["mp4"]))) == 72
    assert outputs["gif"].read_bytes()[:6] == b"GIF89a"
    assert len(list(read_video(outputs["gif"]))) >= 12
    assert load_image(outputs["png"]).shape == load_image(outputs["jpg"]).shape


def test_files_without_our_signature_are_not_ours(
    tmp_path: Path,
    marks: Marks,
    outputs: dict[str, Path],
    analyzer: DlibAnalyzer,
    astronaut: RGBImage,
) -> None:
    picture = astronaut  # a face, never marked
    # A plain PNG: no manifest at all.
    plain = tmp_path / "plain.png"
    save_image(picture, plain)
    assert check_manifest(plain, marks.trust_anchor()).present is False
    # Signed by another self-made authority: present and intact, but not ours.
    other = tmp_path / "other"
    generate_identity(other)
    foreign = tmp_path / "foreign.png"
    save_image(picture, foreign)
    sign_file(foreign, str(other / "signer-chain.pem"), str(other / "signer.key"))
    check = check_manifest(foreign, marks.trust_anchor())
    assert (check.present, check.valid, check.ours) == (True, True, False)
    # Ours, then altered: the manifest no longer matches the pixels.
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(outputs["png"].read_bytes())
    data = bytearray(tampered.read_bytes())
    data[-200] ^= 0xFF
    tampered.write_bytes(bytes(data))
    check = check_manifest(tampered, marks.trust_anchor())
    assert check.present
    assert not check.valid
    assert not check.ours
    for path in (plain, foreign):
        report = check_file(path, marks, analyzer)
        assert not report.ours
        assert report.describe().startswith("Not made by this FaceCast deployment")
    ours = check_file(outputs["png"], marks, analyzer)
    assert ours.ours
    assert ours.watermarked
    assert "Made by this FaceCast deployment on" in ours.describe()


def test_the_operators_certificate_signs_when_configured(
    tmp_path: Path, astronaut: RGBImage
) -> None:
    authority = tmp_path / "operator-ca"
    generate_identity(authority, organisation="Example Operator")
    chain, key = authority / "signer-chain.pem", authority / "signer.key"
    settings = Settings(data_dir=tmp_path / "data", c2pa_cert=chain, c2pa_key=key)
    marks = load_marks(settings)
    assert (marks.cert, marks.key) == (str(chain), str(key))
    assert not (tmp_path / "data" / "c2pa").exists()  # nothing generated
    picture = tmp_path / "signed.jpg"
    save_image(astronaut, picture, sign=marks.sign)
    check = check_manifest(picture, marks.trust_anchor())
    assert (check.valid, check.ours) == (True, True)
    # Half a configuration, or a key that is not the certificate's, stops at once.
    with pytest.raises(ProvenanceUnavailable, match="both"):
        load_marks(Settings(data_dir=tmp_path / "data", c2pa_cert=chain))
    other = tmp_path / "other"
    generate_identity(other)
    with pytest.raises(ProvenanceUnavailable):
        load_marks(
            Settings(data_dir=tmp_path / "d2", c2pa_cert=chain, c2pa_key=other / "signer.key")
        )
