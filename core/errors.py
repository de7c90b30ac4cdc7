"""The error tree: every failure a user can cause has a class and a friendly message.

Adapters show ``error.message`` as it is; nothing else about an error reaches a chat.
"""

from __future__ import annotations


class FaceCastError(Exception):
    """Base of every error whose message is meant for the person using FaceCast."""

    default_message = "Something went wrong with that request."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadMedia(FaceCastError):
    """The file is not an image or video we can read, or it is too big or too small."""

    default_message = "I couldn't read that file as an image."


class NoFaceFound(FaceCastError):
    default_message = (
        "I couldn't find a face in that photo. Send a well-lit selfie that looks at the camera."
    )


class TooManyFaces(FaceCastError):
    default_message = "I see more than one face there. Crop the photo to just yours."


class FaceTooSmall(FaceCastError):
    default_message = "Your face is too small in that photo. Take a closer selfie."


class FaceTooBlurry(FaceCastError):
    default_message = "That photo is too blurry. Hold still and try again in good light."


class FaceTurnedAway(FaceCastError):
    default_message = "Your head is turned too far. Look straight at the camera."


class FaceCropped(FaceCastError):
    default_message = "Part of your face is cut off. Make sure your whole face is in the photo."


class FaceIndexOutOfRange(FaceCastError):
    default_message = "There is no face with that number in the picture."


class ModelUnavailable(FaceCastError):
    default_message = "A face model this engine needs is not installed."


class ClipNotFound(FaceCastError):
    default_message = "I don't know that clip."


class ClipRejected(FaceCastError):
    """A video cannot become a clip pack (too little face, too long, a clash of ids)."""

    default_message = "That video can't be made into a clip."


class CaptionTooLong(FaceCastError):
    default_message = "That caption is too long for a meme."


class NotAllowed(FaceCastError):
    default_message = "You're not allowed to do that."


class QuotaExceeded(FaceCastError):
    default_message = "You've reached today's limit. Try again tomorrow."


__all__ = [
    "BadMedia",
    "CaptionTooLong",
    "ClipNotFound",
    "ClipRejected",
    "FaceCastError",
    "FaceCropped",
    "FaceIndexOutOfRange",
    "FaceTooBlurry",
    "FaceTooSmall",
    "FaceTurnedAway",
    "ModelUnavailable",
    "NoFaceFound",
    "NotAllowed",
    "QuotaExceeded",
    "TooManyFaces",
]
