"""Provenance on every output: C2PA Content Credentials, and the face watermark's key.

Every MP4, GIF, PNG and JPEG FaceCast writes is signed with a C2PA manifest (the Content
Authenticity Initiative's ``c2pa-python``, imported lazily): one ``c2pa.created`` action
whose digital source type is ``trainedAlgorithmicMedia``, the claim generator (FaceCast and
its version), and nothing about the person in it. The signature uses the operator's
certificate chain and key (``FACECAST_C2PA_CERT``, ``FACECAST_C2PA_KEY``); without them a
small certificate authority and a signing certificate under it are generated into
``<data dir>/c2pa/`` on first start (C2PA refuses a bare self-signed leaf).

:func:`check_manifest` reads a file's manifest back: present or not, valid or not, and
whether it was signed under this deployment's certificate authority (it is then the
validator's one trust anchor, so "ours" is a cryptographic check, not a name compared).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from core.errors import FaceCastError
from core.media.watermark import Watermarker, WatermarkKey

SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SIGNABLE = {".mp4": "video/mp4", ".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg"}
SIGNABLE.update({".jpeg": "image/jpeg", ".webp": "image/webp"})
FOLDER = "c2pa"  # in the data dir: the generated authority and signing certificate
CHAIN_FILE, KEY_FILE, ANCHOR_FILE = "signer-chain.pem", "signer.key", "authority.pem"
# What a signature adds to a file (manifest, certificate chain, signature), kept free in
# a size budget so that the signed file still fits it.
SIGNATURE_ROOM = 16 * 1024


class ProvenanceUnavailable(FaceCastError):
    """C2PA signing or reading is not possible here (library or certificate missing)."""


def version() -> str:
    try:
        return metadata.version("facecast")
    except metadata.PackageNotFoundError:  # a checkout run without installing
        return "0"


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:
        raise ProvenanceUnavailable(
            "Content Credentials need the package c2pa-python: pip install c2pa-python"
        ) from exc
    return c2pa


# -- the signing identity ----------------------------------------------------------------------


def generate_identity(folder: Path, *, organisation: str = "FaceCast deployment") -> None:
    """Write a certificate authority, a signing certificate it issued (the chain, leaf
    first) and the signing key into ``folder``, if they are not there yet."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    chain_path, key_path, anchor_path = (folder / n for n in (CHAIN_FILE, KEY_FILE, ANCHOR_FILE))
    if chain_path.exists() and key_path.exists() and anchor_path.exists():
        return
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            ]
        )

    def usage(*, sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign,
            crl_sign=sign,
            encipher_only=False,
            decipher_only=False,
        )

    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority = (
        x509.CertificateBuilder()
        .subject_name(name("FaceCast local authority"))
        .issuer_name(name("FaceCast local authority"))
        .public_key(authority_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(authority_key.public_key()), critical=False
        )
        .sign(authority_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("FaceCast content signer"))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=False), critical=True)
        # C2PA accepts signing certificates for e-mail protection or document signing.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()),
            critical=False,
        )
        .sign(authority_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    # The authority's own key is not kept: nothing else is ever issued under it.
    _write_private(
        key_path,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    anchor_path.write_bytes(authority.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + authority.public_bytes(pem))


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _last_certificate(chain: bytes) -> bytes:
    """The last PEM certificate of a chain: the one closest to the root."""
    marker = b"-----BEGIN CERTIFICATE-----"
    return marker + chain.rsplit(marker, 1)[-1]


# -- marks: what a render needs to mark its outputs -------------------------------------------


@dataclass(frozen=True, slots=True)
class Marks:
    """How this deployment marks outputs: the watermark key (derived from the secret for
    this purpose only) and the C2PA signing files, by path. Picklable: a render order
    carries it to a worker, which reads the signing files itself."""

    watermark_key: bytes = field(repr=False)
    cert: str  # PEM chain, signing certificate first
    key: str  # PEM private key
    anchor: str | None = None  # the certificate authority "ours" is checked against

    @property
    def watermark(self) -> WatermarkKey:
        return WatermarkKey(self.watermark_key)

    def watermarker(self, day: datetime.date | None = None) -> Watermarker:
        return Watermarker(self.watermark, day)

    def sign(self, path: Path) -> None:
        """Embed a signed C2PA manifest into ``path`` (MP4, GIF, PNG or JPEG), in place;
        nothing for :meth:`unsigned` marks (their front-end signs)."""
        if self.cert and self.key:
            sign_file(path, self.cert, self.key)

    def unsigned(self) -> Marks:
        """The watermark alone, for render workers on other machines: the signing files
        stay with the front-end, which signs each output when it arrives."""
        return Marks(self.watermark_key, cert="", key="")

    def check_signing(self) -> None:
        """Raise :class:`ProvenanceUnavailable` now, not at the first render, when the
        signing certificate or key cannot be used."""
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="facecast-c2pa-") as folder:
            probe = Path(folder) / "probe.png"
            Image.new("RGB", (8, 8)).save(probe)
            sign_file(probe, self.cert, self.key)
            check = check_manifest(probe, None)
        if not check.valid:
            raise ProvenanceUnavailable(
                "The C2PA signing key does not sign for its certificate "
                f"({check.problem or 'the signature does not validate'})."
            )

    def trust_anchor(self) -> bytes:
        """The certificate authority outputs of this deployment are signed under."""
        if self.anchor is not None:
            return Path(self.anchor).read_bytes()
        return _last_certificate(Path(self.cert).read_bytes())


@functools.lru_cache(maxsize=4)
def _signer(cert: str, key: str, stamp: tuple[float, float]) -> Any:
    c2pa = _c2pa()
    try:
        chain, private = Path(cert).read_bytes(), Path(key).read_bytes()
    except OSError as exc:
        raise ProvenanceUnavailable(
            f"I can't read the C2PA signing certificate or key: {exc.strerror or exc}."
        ) from exc
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None)
    try:
        return c2pa.Signer.from_info(info)
    except c2pa.C2paError as exc:
        raise ProvenanceUnavailable(f"The C2PA signing certificate was refused: {exc}") from exc


@functools.lru_cache(maxsize=1)
def _builder_context() -> Any:
    """No thumbnail in the manifest: it would be a second copy of someone's face (and
    hundreds of kilobytes)."""
    return _c2pa().Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})


def manifest_definition(title: str) -> dict[str, Any]:
    """The manifest every output carries: created by a trained model, by FaceCast. Nothing
    about who is in it."""
    return {
        "claim_generator_info": [{"name": "FaceCast", "version": version()}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": SOURCE_TYPE,
                            "softwareAgent": {"name": "FaceCast", "version": version()},
                        }
                    ]
                },
            }
        ],
    }


def sign_file(path: Path, cert: str, key: str) -> None:
    """Sign ``path`` in place (written beside it, then moved over it)."""
    mime = SIGNABLE.get(path.suffix.lower())
    if mime is None:
        raise ProvenanceUnavailable(f"C2PA signing of {path.suffix or 'that'} files isn't set up.")
    c2pa = _c2pa()
    try:  # a replaced certificate (a new modification time) gets a new signer
        stamps = tuple(Path(p).stat().st_mtime for p in (cert, key))
    except OSError as exc:
        raise ProvenanceUnavailable(
            f"I can't read the C2PA signing certificate or key: {exc.strerror or exc}."
        ) from exc
    signer = _signer(cert, key, (stamps[0], stamps[1]))
    descriptor, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    try:
        with (
            c2pa.Builder(
                manifest_definition(f"FaceCast output{path.suffix.lower()}"), _builder_context()
            ) as builder,
            path.open("rb") as source,
            Path(temporary).open("w+b") as target,
        ):
            builder.sign(signer, mime, source, target)
    except c2pa.C2paError as exc:
        raise ProvenanceUnavailable(f"C2PA signing failed: {str(exc).splitlines()[0]}") from exc
    else:
        Path(temporary).chmod(path.stat().st_mode & 0o777)
        Path(temporary).replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()


# -- reading a manifest back --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    present: bool
    valid: bool = False  # intact, and the signature checks out
    ours: bool = False  # signed under this deployment's certificate authority
    generator: str = ""
    synthetic: bool = False  # declares trainedAlgorithmicMedia
    signed_at: str = ""
    problem: str = ""


def check_manifest(path: Path, trust_anchor: bytes | None) -> ManifestCheck:
    """Read ``path``'s C2PA manifest and validate it, with ``trust_anchor`` (this
    deployment's authority) as the only trusted root."""
    c2pa = _c2pa()
    mime = SIGNABLE.get(path.suffix.lower())
    settings: dict[str, Any] = {"verify": {"verify_trust": trust_anchor is not None}}
    if trust_anchor is not None:
        settings["trust"] = {"trust_anchors": trust_anchor.decode()}
    try:
        context = c2pa.Context.from_dict(settings)
        with (
            path.open("rb") as stream,
            c2pa.Reader(mime or path.suffix.lstrip("."), stream, context=context) as reader,
        ):
            state = reader.get_validation_state() or ""
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        text = str(exc)
        if "ManifestNotFound" in type(exc).__name__ or "JUMBF" in text:
            return ManifestCheck(present=False)
        return ManifestCheck(present=True, problem=text.splitlines()[0][:200])
    except OSError as exc:
        return ManifestCheck(present=False, problem=str(exc.strerror or exc))
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    generators = active.get("claim_generator_info") or []
    generator = (
        " ".join(
            str(part) for part in (generators[0].get("name"), generators[0].get("version")) if part
        )
        if generators
        else str(active.get("claim_generator", ""))
    )
    actions = [
        action
        for assertion in active.get("assertions", [])
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in assertion.get("data", {}).get("actions", [])
    ]
    synthetic = any(a.get("digitalSourceType") == SOURCE_TYPE for a in actions)
    statuses = store.get("validation_status") or []
    failures = [
        s.get("code", "") for s in statuses if s.get("code") != "signingCredential.untrusted"
    ]
    valid = state in ("Valid", "Trusted") or (state == "Invalid" and not failures)
    return ManifestCheck(
        present=True,
        valid=valid,
        ours=state == "Trusted",
        generator=generator,
        synthetic=synthetic,
        signed_at=str((active.get("signature_info") or {}).get("time", "")),
        problem=", ".join(failures)[:200],
    )


__all__ = [
    "SIGNABLE",
    "SIGNATURE_ROOM",
    "SOURCE_TYPE",
    "ManifestCheck",
    "Marks",
    "ProvenanceUnavailable",
    "check_manifest",
    "generate_identity",
    "manifest_definition",
    "sign_file",
    "version",
]
