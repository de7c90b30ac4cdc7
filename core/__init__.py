"""FaceCast's core: the face work and the product logic. It imports no chat library.

Adapters use only the names listed in ``__all__``.
"""

from __future__ import annotations

from .config import EngineName, Settings
from .errors import (
    BadMedia,
    ClipNotFound,
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
from .media import AI_NOTE, RGBImage, add_ai_label, load_image, save_image
from .profile import FaceProfile, build_profile, check_quality, enroll
from .swap import SWAPPERS, ClassicSwapper, Swapper, get_swapper


def make_analyzer(settings: Settings) -> Analyzer:
    """The face analyzer for the configured engine."""
    # Only the classic engine exists so far; its analyzer is dlib.
    del settings
    return DlibAnalyzer()


def image_limits(settings: Settings) -> dict[str, int]:
    """Keyword arguments for :func:`load_image` from the settings."""
    return {
        "max_bytes": settings.max_image_bytes,
        "max_pixels": settings.max_image_pixels,
        "min_side": settings.min_image_side,
    }


__all__ = [
    "AI_NOTE",
    "SWAPPERS",
    "Analyzer",
    "BadMedia",
    "ClassicSwapper",
    "ClipNotFound",
    "DlibAnalyzer",
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
    "ModelUnavailable",
    "NoFaceFound",
    "NotAllowed",
    "QuotaExceeded",
    "RGBImage",
    "Settings",
    "Swapper",
    "TooManyFaces",
    "add_ai_label",
    "build_profile",
    "check_quality",
    "enroll",
    "get_swapper",
    "identity_distance",
    "image_limits",
    "load_image",
    "make_analyzer",
    "save_image",
]
