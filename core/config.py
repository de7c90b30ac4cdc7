"""One frozen settings object, read from ``FACECAST_*`` variables and an optional ``.env``.

It is built once at the edge (the CLI, a server) and passed in; nothing deeper reads the
environment.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from core.errors import FaceCastError
from core.kinds import EngineName

PREFIX = "FACECAST_"

# The project's own clip packs: a wheel carries them as core/packs/bundled (pyproject.toml
# maps the repository's clips/ there); a checkout reads clips/ itself.
_INSTALLED_CLIPS = Path(__file__).resolve().parent / "packs" / "bundled"
_SOURCE_CLIPS = (
    _INSTALLED_CLIPS if _INSTALLED_CLIPS.is_dir() else Path(__file__).resolve().parents[1] / "clips"
)


# How far a face may be turned from the camera (degrees, either way): for a selfie to be
# enrolled, and for a clip's face to show the swap (further, it fades out).
MAX_YAW_DEGREES = 40.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        default=Path("~/.facecast"), description="Database, face data, clip packs, outputs."
    )
    clips_dir: Path | None = Field(
        default=None, description="The operator's clip packs; default <data dir>/clips."
    )
    bundled_clips_dir: Path = Field(
        default=_SOURCE_CLIPS, description="Read-only clip packs that ship with FaceCast."
    )
    engine: EngineName = "classic"
    models_dir: Path | None = Field(
        default=None, description="Neural model files; default <data dir>/models."
    )
    models_registry: Path | None = Field(
        default=None, description="Another model registry (TOML) instead of the built-in one."
    )

    # Clip packs: what `facecast clips add` accepts.
    max_video_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_clip_seconds: float = Field(default=30.0, gt=0)
    min_coverage: float = Field(default=0.6, ge=0, le=1)
    # A clip whose face is turned further than max_yaw_degrees in more than this share of
    # the frames where it is seen is refused: one frontal selfie cannot cover it.
    max_turned_share: float = Field(default=0.5, ge=0, le=1)

    # Image intake: a cap on bytes and decoded pixels keeps decompression bombs out.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # Per user: decoding refills at this many pixels a second, up to max_image_pixels.
    decode_pixels_per_second: int = Field(default=4_000_000, gt=0)
    min_image_side: int = Field(default=64, gt=0)
    # Selfies are decoded no larger than needed (JPEG's reduced-scale decoding).
    selfie_max_side: int = Field(default=1600, ge=256)

    # Enrolment thresholds (eye distance is between the outer eye corners, in pixels).
    min_eye_distance: float = Field(default=40.0, gt=0)
    good_eye_distance: float = Field(default=80.0, gt=0)
    min_sharpness: float = Field(default=60.0, ge=0)
    max_yaw_degrees: float = Field(default=MAX_YAW_DEGREES, gt=0, le=90)
    # A second face at least this large (relative eye distance) makes a selfie ambiguous.
    rival_face_ratio: float = Field(default=0.6, gt=0, le=1)

    # The chat service: storage, privacy, limits, the render queue.
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default SQLite in the data dir."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Encrypts face data, keys account hashes, signs web sessions; several, "
            "comma-separated, to rotate (the first is used, all are accepted). Unset: a key "
            "file is generated in the data dir."
        ),
    )
    retention_days: float = Field(default=30.0, gt=0)
    output_ttl_hours: float = Field(
        default=24.0, gt=0, description="Rendered GIFs and MP4s are deleted after this long."
    )
    max_faces_per_user: int = Field(default=5, ge=1, le=50)
    protected_dir: Path | None = Field(
        default=None, description="Reference photos of people who may not be enrolled."
    )
    protected_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=4,
        description="Identity distance under which a selfie matches; default per engine.",
    )
    daily_quota: int = Field(default=50, ge=1)
    renders_per_minute: int = Field(default=6, ge=1)
    workers: int = Field(default=2, ge=1, le=64)
    max_queue: int = Field(default=20, ge=0)
    # Fairness: renders one person may have waiting or running at once (a burst waits its turn).
    max_jobs_per_user: int = Field(default=2, ge=1, le=100)
    # Rate limits, quotas, jobs in flight and Telegram update ids shared by several front-ends.
    state_url: SecretStr | None = Field(
        default=None,
        description="redis://host:6379/0 for state shared by front-ends; default: the broker's.",
    )
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # A web request whose body stops arriving for this long is answered 408 and dropped.
    body_idle_seconds: float = Field(default=10.0, gt=0)
    output_max_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # The web chat: how many new sessions (new users) one address may start an hour.
    web_sessions_per_ip_hour: int = Field(default=30, ge=1)
    # On SIGTERM: running renders get this long to finish, queued ones are told at once.
    shutdown_grace: float = Field(default=10.0, ge=0)
    # GIFs aim at this many bytes per second of animation (0: only output_max_bytes).
    gif_bytes_per_second: int = Field(default=1_000_000, ge=0)

    # Content Credentials (C2PA): the operator's signing certificate chain (PEM, signing
    # certificate first) and its private key; unset: a local authority is generated.
    c2pa_cert: Path | None = Field(
        default=None, description="C2PA signing certificate chain (PEM); default generated."
    )
    c2pa_key: Path | None = Field(default=None, description="The C2PA signing key (PEM).")
    # Liveness ("verify it's you"): a /verify challenge is answered with a short video.
    verify_challenge_seconds: float = Field(
        default=180.0, gt=0, description="How long a /verify challenge may be answered."
    )
    verify_identity_threshold: float = Field(
        default=0.55,
        gt=0,
        lt=2,
        description="dlib identity distance a live capture must stay under.",
    )
    verify_turn_degrees: float = Field(default=12.0, gt=0, lt=60)
    verify_max_video_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    # Scale-out (the `scale` extra): with a broker URL, renders and enrolment analysis run in
    # `facecast worker` processes on any machine instead of the local pool.
    broker_url: SecretStr | None = Field(
        default=None, description="redis://host:6379/0; unset: the local process pool."
    )
    broker_prefix: str = Field(
        default="facecast", pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Redis key prefix."
    )
    # Every job on a worker ends within this long; a hung encoder's worker is replaced.
    job_timeout: float = Field(default=300.0, gt=0)
    # A job whose worker stopped answering this long is taken over by another worker.
    reclaim_seconds: float = Field(default=30.0, gt=0)
    # Modules a worker (and the front-end) imports to register extra tasks (tests use it).
    worker_tasks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Telegram (python-telegram-bot). The base URLs point it at a local Bot API server.
    telegram_token: SecretStr | None = None
    telegram_base_url: str | None = None
    telegram_base_file_url: str | None = None
    telegram_webhook_url: str | None = Field(
        default=None, description="Public https URL of this server; unset: long polling."
    )
    telegram_poll_timeout: float = Field(default=10.0, ge=0)
    telegram_cache_chat: str | None = Field(
        default=None,
        description=(
            "Chat (id or @channel) the bot uploads inline renders to for a file id (each "
            "upload is deleted at once); unset: the user's own DM."
        ),
    )
    # Inline mode renders a meme while the user types: previews have their own budget (a
    # chosen result counts against daily_quota like any render).
    inline_previews_per_minute: int = Field(default=12, ge=1)
    inline_previews_per_day: int = Field(default=300, ge=1)

    # Discord (discord.py). The API base and gateway URL point it at a local fake in tests.
    discord_token: SecretStr | None = None
    discord_api_base: str | None = None
    discord_gateway_url: str | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Sync commands to these guilds on start (instant): 123,456 or [123, 456].",
    )
    discord_sync_global: bool = Field(
        default=False, description="Sync commands globally on this start (takes up to an hour)."
    )

    @field_validator("worker_tasks", mode="before")
    @classmethod
    def _module_names(cls, value: Any) -> Any:
        """Comma-separated module names."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """A JSON list ("[123, 456]") or plain comma-separated ids ("123,456", "123")."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                return value  # reported as not a list
        return [part.strip() for part in text.split(",") if part.strip()]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.resolved_data_dir / 'facecast.db'}"

    @property
    def resolved_models_dir(self) -> Path:
        return (self.models_dir or self.resolved_data_dir / "models").expanduser()

    @property
    def outputs_dir(self) -> Path:
        return self.resolved_data_dir / "outputs"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def resolved_clips_dir(self) -> Path:
        """Where `facecast clips add` writes: never inside the installed package."""
        return (self.clips_dir or self.resolved_data_dir / "clips").expanduser()


class BadSettings(FaceCastError):
    """A FACECAST_* setting (in the environment or .env) has a value that is not accepted."""


_FORMS: dict[Any, str] = {
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    Path: "a path",
    str: "text",
    SecretStr: "text",
}


def accepted_form(name: str) -> str:
    """What setting ``name`` accepts, in words: "a whole number at least 1 and at most 64"."""
    field = Settings.model_fields[name]
    kind: Any = field.annotation
    if get_origin(kind) in (Union, UnionType):
        kind = next(a for a in get_args(kind) if a is not type(None))
    if get_origin(kind) is list:
        return "whole numbers separated by commas, like 123,456 (or a JSON list, [123, 456])"
    if get_origin(kind) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(kind))
    bounds = [
        f"{word} {getattr(rule, attr)}"
        for rule in field.metadata
        for attr, word in (("gt", "above"), ("ge", "at least"), ("lt", "below"), ("le", "at most"))
        if getattr(rule, attr, None) is not None
    ]
    return " ".join([_FORMS.get(kind, "a valid value"), " and ".join(bounds)]).strip()


def _problem(name: str, given: Any) -> str:
    variable = PREFIX + name.upper()
    secret = Settings.model_fields[name].annotation in (SecretStr, SecretStr | None)
    shown = os.environ.get(variable, given)
    value = "" if secret or not isinstance(shown, str) else f"={shown!r}"
    return f"{variable}{value} is not valid: use {accepted_form(name)}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and .env; a bad value raises :class:`BadSettings`
    with one line naming each bad variable and the form it accepts."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            if name in Settings.model_fields and name not in problems:
                problems[name] = _problem(name, error.get("input"))
        raise BadSettings("; ".join(problems.values()) or str(exc).splitlines()[0]) from None
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        found = re.search(r'field "(\w+)"', str(exc))
        if found is None or found.group(1) not in Settings.model_fields:
            raise BadSettings(str(exc)) from None
        raise BadSettings(_problem(found.group(1), None)) from None


__all__ = [
    "MAX_YAW_DEGREES",
    "BadSettings",
    "EngineName",
    "Settings",
    "accepted_form",
    "load_settings",
]
