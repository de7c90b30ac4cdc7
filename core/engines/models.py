"""Neural model files: what each is (data in ``models.toml``), whether it is here, intact.

Nothing is ever downloaded implicitly. :class:`ModelStore` finds a model in the operator's
folder (``FACECAST_MODELS_DIR``), checks its sha256 once per process, and explains what is
missing and where to get it; :meth:`ModelStore.fetch` downloads only when asked to (``facecast
models fetch``), verifies the hash, and fails clearly when offline. :func:`session` opens an
onnxruntime session with CUDA first when this machine has it, else the CPU.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.errors import ModelUnavailable

REGISTRY = Path(__file__).resolve().parent / "models.toml"
Status = Literal["present", "missing", "wrong hash"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    file: str  # relative to the models folder
    role: Literal["swapper", "recognition", "detection", "landmarks", "attributes"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int | None = None
    input_size: int
    mean: float
    std: float
    licence: str
    source: str  # the page that describes the model
    url: str | None = None  # what `facecast models fetch` downloads (a .zip is unpacked)


def load_registry(path: Path = REGISTRY) -> dict[str, ModelSpec]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    specs = [ModelSpec.model_validate(entry) for entry in data.get("model", [])]
    return {spec.name: spec for spec in specs}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ModelState:
    spec: ModelSpec
    path: Path
    status: Status


class ModelStore:
    def __init__(self, folder: Path, registry: dict[str, ModelSpec] | None = None) -> None:
        self.folder = folder.expanduser()
        self.registry = registry if registry is not None else load_registry()
        self._verified: dict[Path, tuple[int, float, str]] = {}

    def spec(self, name: str) -> ModelSpec:
        try:
            return self.registry[name]
        except KeyError:
            raise ModelUnavailable(f"There is no model called {name!r}.") from None

    def state(self, name: str) -> ModelState:
        spec = self.spec(name)
        path = self.folder / spec.file
        if not path.is_file():
            return ModelState(spec, path, "missing")
        stat = path.stat()
        cached = self._verified.get(path)
        if cached is None or cached[:2] != (stat.st_size, stat.st_mtime):
            cached = (stat.st_size, stat.st_mtime, sha256_of(path))
            self._verified[path] = cached
        return ModelState(spec, path, "present" if cached[2] == spec.sha256 else "wrong hash")

    def states(self) -> list[ModelState]:
        return [self.state(name) for name in self.registry]

    def require(self, name: str) -> Path:
        """The model's path, or :class:`ModelUnavailable` saying what to do."""
        state = self.state(name)
        if state.status == "present":
            return state.path
        spec = state.spec
        if state.status == "wrong hash":
            raise ModelUnavailable(
                f"{state.path} is not the expected {spec.name} (its sha256 differs): a damaged "
                "or different file. Replace it, or run `facecast models fetch "
                f"{spec.name}`."
            )
        raise ModelUnavailable(
            f"The model {spec.name} is missing: put {spec.file} into {self.folder} "
            f"(see `facecast models`; source: {spec.source}) or run `facecast models fetch "
            f"{spec.name}`."
        )

    def fetch(self, name: str, *, timeout: float = 60.0) -> Path:
        """Download a model on the operator's request and keep it only if its hash matches."""
        spec = self.spec(name)
        if self.state(name).status == "present":
            return self.folder / spec.file
        if spec.url is None:
            raise ModelUnavailable(f"No download address is known for {spec.name}.")
        target = self.folder / spec.file
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder) as work:
            download = Path(work) / Path(spec.url).name
            try:
                with (
                    urllib.request.urlopen(spec.url, timeout=timeout) as response,
                    download.open("wb") as out,
                ):
                    shutil.copyfileobj(response, out, 1 << 20)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise ModelUnavailable(
                    f"Could not download {spec.name} from {spec.url} ({exc}). This machine may "
                    f"be offline: copy {spec.file} into {self.folder} by hand."
                ) from exc
            candidate = download
            if download.suffix == ".zip":
                wanted = Path(spec.file).name
                with zipfile.ZipFile(download) as archive:
                    member = next((m for m in archive.namelist() if Path(m).name == wanted), None)
                    if member is None:
                        raise ModelUnavailable(f"{spec.url} does not contain {wanted}.")
                    candidate = Path(archive.extract(member, work))
            if sha256_of(candidate) != spec.sha256:
                raise ModelUnavailable(
                    f"The downloaded {spec.name} does not match its sha256; it was discarded."
                )
            candidate.replace(target)
        self._verified.pop(target, None)
        return target


def providers() -> list[str]:
    """CUDA first when this onnxruntime build and machine have it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def session(path: Path) -> Any:
    """An onnxruntime session on the best provider (created once per model by callers)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelUnavailable(
            "The neural engine needs onnxruntime: install FaceCast's `neural` (CPU) or `gpu` extra."
        ) from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initialisers in the logs
    return ort.InferenceSession(str(path), sess_options=options, providers=providers())


__all__ = [
    "REGISTRY",
    "ModelSpec",
    "ModelState",
    "ModelStore",
    "load_registry",
    "providers",
    "session",
    "sha256_of",
]
