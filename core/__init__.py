"""FaceCast's core: the face work and the product logic. It imports no chat library.

Adapters use only the names listed in ``__all__``.
"""

from __future__ import annotations

from .camera import MOTIONS, Motion, animate_still
from .captions import BOTTOM, MAX_CAPTION_CHARS, TOP, CaptionBox, check_caption, render_caption
from .clips import Clip, ClipLibrary, ClipManifest, ClipSource, ClipTrack, build_clip, load_clip
from .config import EngineName, Settings
from .errors import (
    BadMedia,
    CaptionTooLong,
    ClipNotFound,
    ClipRejected,
    FaceCastError,
    FaceCropped,
    FaceIndexOutOfRange,
    FaceTooBlurry,
    FaceTooSmall,
    FaceTurnedAway,
    ModelUnavailable,
    NoFaceFound,
    NotAllowed,
    QuotaExceeded,
    TooManyFaces,
)
from .faces import Analyzer, DlibAnalyzer, Face, FaceQuality, identity_distance
from .jobs import JobRunner, LocalJobRunner, RenderFailed, RunnerBusy, UsageLimits
from .media import (
    AI_NOTE,
    EncodedVideo,
    RGBImage,
    VideoInfo,
    add_ai_label,
    encode,
    load_image,
    load_picture,
    probe_video,
    read_video,
    save_image,
)
from .memes import MemeLibrary, MemeTemplate, meme_timing, render_meme, render_meme_to_file
from .metrics import Metrics
from .models import ModelState, ModelStore, load_registry
from .profile import FaceProfile, IdentityEmbedder, build_profile, check_quality, enroll
from .render import render_clip, render_to_file
from .service import (
    HELP,
    Chat,
    Choice,
    Choices,
    Media,
    Person,
    Progress,
    ProtectedFaces,
    Quoted,
    Reply,
    Request,
    Service,
    Text,
)
from .store import GROUP_MEMES, Store
from .swap import SWAPPERS, ClassicSwapper, Swapper, SwapSequence, get_swapper


def make_analyzer(settings: Settings) -> Analyzer:
    """The engine's face analyzer: dlib's for the classic engine; buffalo_l's SCRFD,
    1k3d68 and ArcFace for the neural one (68 landmarks either way)."""
    if settings.engine == "insightface":
        from .neural import InsightFaceAnalyzer

        return InsightFaceAnalyzer(model_store(settings))
    return DlibAnalyzer()


def model_store(settings: Settings) -> ModelStore:
    registry = load_registry(settings.models_registry) if settings.models_registry else None
    return ModelStore(settings.resolved_models_dir, registry)


def make_identity(settings: Settings, analyzer: Analyzer | None = None) -> IdentityEmbedder | None:
    """The engine's own identity embedder: ArcFace for the neural engine, none for classic.
    The neural engine's analyzer already computes ArcFace; passing it avoids a second model."""
    if settings.engine == "insightface":
        from .neural import ArcFaceEmbedder, InsightFaceAnalyzer

        if isinstance(analyzer, InsightFaceAnalyzer):
            return analyzer
        return ArcFaceEmbedder(model_store(settings))
    return None


def make_swapper(settings: Settings) -> Swapper:
    """The configured engine's swapper (the neural one loads its model files)."""
    if settings.engine == "insightface":
        from .neural import InSwapper

        return InSwapper(model_store(settings))
    return get_swapper(settings.engine)


__all__ = [
    "AI_NOTE",
    "BOTTOM",
    "GROUP_MEMES",
    "HELP",
    "MAX_CAPTION_CHARS",
    "MOTIONS",
    "SWAPPERS",
    "TOP",
    "Analyzer",
    "BadMedia",
    "CaptionBox",
    "CaptionTooLong",
    "Chat",
    "Choice",
    "Choices",
    "ClassicSwapper",
    "Clip",
    "ClipLibrary",
    "ClipManifest",
    "ClipNotFound",
    "ClipRejected",
    "ClipSource",
    "ClipTrack",
    "DlibAnalyzer",
    "EncodedVideo",
    "EngineName",
    "Face",
    "FaceCastError",
    "FaceCropped",
    "FaceIndexOutOfRange",
    "FaceProfile",
    "FaceQuality",
    "FaceTooBlurry",
    "FaceTooSmall",
    "FaceTurnedAway",
    "IdentityEmbedder",
    "JobRunner",
    "LocalJobRunner",
    "Media",
    "MemeLibrary",
    "MemeTemplate",
    "Metrics",
    "ModelState",
    "ModelStore",
    "ModelUnavailable",
    "Motion",
    "NoFaceFound",
    "NotAllowed",
    "Person",
    "Progress",
    "ProtectedFaces",
    "QuotaExceeded",
    "Quoted",
    "RGBImage",
    "RenderFailed",
    "Reply",
    "Request",
    "RunnerBusy",
    "Service",
    "Settings",
    "Store",
    "SwapSequence",
    "Swapper",
    "Text",
    "TooManyFaces",
    "UsageLimits",
    "VideoInfo",
    "add_ai_label",
    "animate_still",
    "build_clip",
    "build_profile",
    "check_caption",
    "check_quality",
    "encode",
    "enroll",
    "get_swapper",
    "identity_distance",
    "load_clip",
    "load_image",
    "load_picture",
    "load_registry",
    "make_analyzer",
    "make_identity",
    "make_swapper",
    "meme_timing",
    "model_store",
    "probe_video",
    "read_video",
    "render_caption",
    "render_clip",
    "render_meme",
    "render_meme_to_file",
    "render_to_file",
    "save_image",
]
