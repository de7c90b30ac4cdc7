"""What adapters send the service (:class:`Request`) and what it answers (:data:`Reply`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# -- what adapters send -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    platform: str  # "web", "telegram", "discord"
    id: str  # the platform's account id
    name: str = ""


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    is_group: bool = False


@dataclass(frozen=True, slots=True)
class Quoted:
    """The message a request replies to."""

    author: Person
    text: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    sender: Person
    chat: Chat
    text: str = ""
    image: bytes | None = None
    reply_to: Quoted | None = None
    prefer: Literal["mp4", "gif"] | None = None  # the adapter's preferred animation format
    max_bytes: int | None = None  # the platform's upload limit for this answer
    # A picture or video to /check (the one replied to, or attached), and its file name.
    media: bytes | None = None
    media_name: str = ""
    video: bytes | None = None  # a short live capture answering /verify
    video_suffix: str = ".mp4"  # its container, as the platform says (".webm", ".mov")
    nonce: str | None = None  # the challenge it answers, when the platform can say


# -- what the service answers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class VerifyChallenge(Text):
    """A /verify challenge: adapters that can open a camera (the web chat) use the fields;
    the others show the text, which says what to film."""

    challenge: str = ""  # one of core.faces.liveness.CHALLENGES
    instruction: str = ""  # "turn your head to your left, then to your right"
    nonce: str = ""
    seconds: float = 3.0  # how long to record
    expires_in: float = 0.0


@dataclass(frozen=True, slots=True)
class Choice:
    label: str
    command: str


@dataclass(frozen=True, slots=True)
class Choices:
    text: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True, slots=True)
class Progress:
    """A status line an adapter shows in place (edits, not new messages)."""

    job: str
    text: str
    done: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Media:
    path: Path
    kind: Literal["mp4", "gif"]
    caption: str
    width: int = 0
    height: int = 0
    has_audio: bool = False  # an MP4 with sound: a video, not a silent animation


Reply = Text | Choices | Progress | Media


__all__ = [
    "Chat",
    "Choice",
    "Choices",
    "Media",
    "Person",
    "Progress",
    "Quoted",
    "Reply",
    "Request",
    "Text",
    "VerifyChallenge",
]
