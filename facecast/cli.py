"""The ``facecast`` command line.

User mistakes (a missing file, a photo without a face, ...) end with exit code 2 and one
line on stderr; they never print a traceback.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from core.errors import (
    BadMedia,
    FaceCastError,
    FaceCropped,
    FaceIndexOutOfRange,
    FaceTooBlurry,
    FaceTooSmall,
    FaceTurnedAway,
    NoFaceFound,
)
from core.kinds import EngineName, Motion

if TYPE_CHECKING:
    from rich.progress import Progress

    from core.config import Settings
    from core.faces.analyzer import Analyzer, Face
    from core.faces.profile import FaceProfile
    from core.media.provenance import Marks

USER_ERROR = 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

_VERDICTS: dict[type[FaceCastError], str] = {
    FaceTooSmall: "too small",
    FaceCropped: "cut off at the edge",
    FaceTurnedAway: "turned too far",
    FaceTooBlurry: "too blurry",
}

app = typer.Typer(
    name="facecast",
    help="FaceCast: put a face from one selfie into pictures, clips and meme GIFs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a FaceCastError into one line on stderr and exit code 2."""
    try:
        yield
    except FaceCastError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(USER_ERROR) from None


LENIENT_HELP = "Accept a selfie that is blurry, turned or cut off instead of refusing it."

# Options several commands share.
Selfie = Annotated[Path, typer.Option("--face", "-f", help="The selfie whose face to use.")]
Lenient = Annotated[bool, typer.Option("--lenient", help=LENIENT_HELP)]
EngineOption = Annotated[
    EngineName | None,
    typer.Option("--engine", help="Face engine for this command (default: FACECAST_ENGINE)."),
]
MaxMegabytes = Annotated[
    float | None, typer.Option("--max-mb", help="Shrink until the file fits this size.")
]


def _settings(engine: EngineName | None) -> Settings:
    from core.config import load_settings

    settings = load_settings()
    return settings if engine is None else settings.model_copy(update={"engine": engine})


def _animation(output: Path) -> None:
    if output.suffix.lower() not in (".mp4", ".gif"):
        raise BadMedia(f"The output must end in .mp4 or .gif: got {output}.")


def _marks(settings: Settings) -> Marks:
    """The watermark key and C2PA signing files every output is marked with."""
    from core.service.provenance import load_marks

    return load_marks(settings)


def _budget(max_mb: float | None) -> int | None:
    return None if max_mb is None else int(max_mb * 1024 * 1024)


def _profile_from(
    face: Path, settings: Settings, analyzer: Analyzer, *, lenient: bool
) -> FaceProfile:
    """Enrol the selfie at ``face``; ``lenient`` skips the quality refusals."""
    from core.engines.registry import make_identity
    from core.faces.profile import build_profile, enroll
    from core.media.images import load_picture

    selfie = load_picture(face, settings, selfie=True)
    identity = make_identity(settings, analyzer)
    if not lenient:
        return enroll(selfie, analyzer, settings, identity=identity)
    faces = analyzer.detect(selfie, embed=True)
    if not faces:
        raise NoFaceFound()
    best = max(faces, key=lambda f: f.quality.eye_distance)
    profile = build_profile(selfie, best)
    if identity is None:
        return profile
    return dataclasses.replace(profile, arcface=identity.embed(selfie, best.landmarks))


def _print_notes(profile: FaceProfile) -> None:
    for note in profile.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)


@app.command()
def swap(
    face: Selfie,
    target: Annotated[
        Path, typer.Option("--target", "-t", help="The picture to put the face into.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the result (.png, .jpg, .webp).")
    ],
    target_face: Annotated[
        int | None,
        typer.Option(
            "--target-face",
            "-n",
            min=1,
            help="Swap only face N of the target (numbered left to right, as `facecast faces` "
            "shows), even one turned too far. Default: every face turned towards the camera.",
        ),
    ] = None,
    lenient: Lenient = False,
    engine: EngineOption = None,
) -> None:
    """Put the face from a selfie onto the faces in a picture."""
    from core.engines.registry import make_analyzer, make_swapper
    from core.media.images import load_picture, save_image
    from core.media.overlay import add_ai_label

    with user_errors():
        if output.suffix.lower() not in IMAGE_SUFFIXES:
            raise BadMedia(f"The output must end in {', '.join(IMAGE_SUFFIXES)}: got {output}.")
        settings = _settings(engine)
        started = time.perf_counter()
        analyzer = make_analyzer(settings)
        profile = _profile_from(face, settings, analyzer, lenient=lenient)

        picture = load_picture(target, settings)
        targets = analyzer.detect(picture)
        if not targets:
            raise NoFaceFound(f"I couldn't find a face in {target.name} to swap into.")
        turned: list[Face] = []
        if target_face is not None:
            if target_face > len(targets):
                raise FaceIndexOutOfRange(
                    f"{target.name} has {len(targets)} face(s); pick --target-face "
                    f"1 to {len(targets)}."
                )
            targets = [targets[target_face - 1]]
        else:
            # A face turned further than a selfie may be shows what one frontal selfie
            # does not (its far cheek, its profile): swapped, it came out stretched and
            # grey. Those are left as they are unless chosen by number.
            facing: list[Face] = []
            for found in targets:
                seen = abs(found.quality.yaw) <= settings.max_yaw_degrees
                (facing if seen else turned).append(found)
            targets = facing
            if not targets:
                raise NoFaceFound(
                    f"Every face in {target.name} is turned too far from the camera for a "
                    "straight-on selfie; pick one with --target-face to swap it anyway."
                )
        swapper = make_swapper(settings)
        marks = _marks(settings)
        watermark = marks.watermarker()
        result = picture
        for found in targets:
            result = swapper.swap(profile, result, found.landmarks)
        for found in targets:
            result = watermark.embed(result, found.landmarks[:68])
        output.parent.mkdir(parents=True, exist_ok=True)
        save_image(add_ai_label(result), output, sign=marks.sign)
        elapsed = time.perf_counter() - started
        _print_notes(profile)
        out.print(
            f"Swapped {len(targets)} face(s) into {output} in {elapsed:.1f}s.", highlight=False
        )
        if turned:
            angles = ", ".join(f"{abs(f.quality.yaw):.0f}°" for f in turned)
            out.print(
                f"note: {len(turned)} face(s) turned too far from the camera ({angles}) were "
                "left as they are; pick one with --target-face to swap it anyway.",
                highlight=False,
            )


@app.command()
def faces(
    image: Annotated[Path, typer.Argument(help="A picture to look for faces in.")],
) -> None:
    """List the faces in a picture, left to right, with their boxes and quality."""
    from rich.table import Table

    from core.config import load_settings
    from core.engines.registry import make_analyzer
    from core.faces.profile import check_quality
    from core.media.images import load_picture

    with user_errors():
        settings = load_settings()
        picture = load_picture(image, settings)
        found = make_analyzer(settings).detect(picture)
        if not found:
            raise NoFaceFound(f"I couldn't find a face in {image.name}.")
        table = Table(title=f"{len(found)} face(s) in {image.name}")
        for column in ("#", "box (x0,y0,x1,y1)", "score", "eyes px", "sharpness", "yaw°"):
            table.add_column(column, justify="right")
        table.add_column("as a selfie")
        for number, face in enumerate(found, start=1):
            q = face.quality
            try:
                check_quality(q, settings)
                flaws = [
                    word
                    for word, flawed in (
                        ("small", q.eye_distance < settings.good_eye_distance),
                        ("greyscale", q.greyscale),
                    )
                    if flawed
                ]
                verdict = f"ok ({', '.join(flaws)})" if flaws else "ok"
            except FaceCastError as exc:
                verdict = _VERDICTS.get(type(exc), "refused")
            table.add_row(
                str(number),
                ",".join(str(v) for v in face.bbox),
                f"{face.score:.2f}",
                f"{q.eye_distance:.0f}",
                f"{q.sharpness:.0f}",
                f"{q.yaw:+.0f}",
                verdict,
            )
        out.print(table)


clips_app = typer.Typer(
    help="Clip packs: videos whose face track is computed once, ahead of renders.",
    no_args_is_help=True,
)
app.add_typer(clips_app, name="clips")


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


@clips_app.command("add")
def clips_add(
    video: Annotated[
        Path,
        typer.Argument(
            help="A video, or a still picture to animate with --motion.", metavar="VIDEO"
        ),
    ],
    clip_id: Annotated[str, typer.Option("--id", help="Short id: lower-case, digits, - or _.")],
    title: Annotated[str | None, typer.Option(help="Title shown to users.")] = None,
    tags: Annotated[str, typer.Option(help="Comma-separated search tags.")] = "",
    start: Annotated[float, typer.Option(min=0, help="Start, in seconds.")] = 0.0,
    end: Annotated[float | None, typer.Option(help="End, in seconds.")] = None,
    face: Annotated[
        int | None,
        typer.Option(min=1, help="Which face to track: N-th from the left in the first frame."),
    ] = None,
    max_side: Annotated[int, typer.Option(min=64, help="Long side of the stored media.")] = 480,
    motion: Annotated[
        Motion | None,
        typer.Option(help="For a still picture: the camera move (default push-in)."),
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=0.5, help="For a still picture: clip length.")
    ] = 3.0,
    fps: Annotated[
        float, typer.Option(min=1, max=60, help="For a still picture: frame rate.")
    ] = 24.0,
    license_name: Annotated[
        str, typer.Option("--license", help="Licence of the footage, e.g. CC-BY-4.0.")
    ] = "unknown",
    source: Annotated[str | None, typer.Option(help="Where the footage comes from.")] = None,
    attribution: Annotated[str, typer.Option(help="Credit line the licence asks for.")] = "",
    replace: Annotated[bool, typer.Option(help="Overwrite a pack with the same id.")] = False,
    audio: Annotated[
        bool, typer.Option("--audio/--no-audio", help="Keep the video's sound (AAC, trimmed).")
    ] = True,
) -> None:
    """Pre-process a video into a clip pack in the operator's clips folder."""
    from core.config import load_settings
    from core.engines.registry import make_analyzer
    from core.packs.build import ClipSource, build_clip

    with user_errors():
        settings = load_settings()
        request = ClipSource(
            video=video,
            clip_id=clip_id,
            title=title,
            tags=tuple(t.strip() for t in tags.split(",") if t.strip()),
            start=start,
            end=end,
            face=face,
            max_side=max_side,
            motion=motion,
            seconds=seconds,
            fps=fps,
            licence=license_name,
            source=source,
            attribution=attribution,
            audio=audio,
        )
        started = time.perf_counter()
        with _progress() as bar:
            task = bar.add_task(f"tracking faces in {video.name}", total=None)
            clip = build_clip(
                request,
                settings,
                make_analyzer(settings),
                replace=replace,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        elapsed = time.perf_counter() - started
        m = clip.manifest
        out.print(
            f"Added {m.id!r} to {clip.folder}: {m.frames} frames, {m.width}x{m.height}, "
            f"{'with sound' if m.audio else 'silent'}, "
            f"face visible in {m.coverage:.0%} of frames, jitter {m.jitter_raw:.2%} -> "
            f"{m.jitter_smoothed:.2%} of the eye distance, "
            f"{m.frames / max(elapsed, 1e-6):.0f} frames/s.",
            highlight=False,
        )
        if m.turned and m.max_turn is not None:
            out.print(
                f"note: the face turns more than {settings.max_yaw_degrees:g}° from the camera "
                f"in {m.turned:.0%} of the frames (up to {m.max_turn:.0f}°); one frontal "
                "selfie can't cover that, so the swap fades out there and those frames keep "
                "the clip's own face.",
                highlight=False,
            )
        if settings.broker_url is not None:
            digest = _publish(settings, clip.folder)
            out.print(f"Published to the render workers (sha256 {digest[:12]}).", highlight=False)


def _ping(url: str) -> None:
    """A one-line error, naming the host but never the password, when Redis won't answer."""
    import asyncio
    from urllib.parse import urlsplit

    from redis.exceptions import RedisError

    from core.storage.blobs import redis_client

    async def ping() -> None:
        redis = redis_client(url)
        try:
            await redis.ping()
        finally:
            await redis.aclose()

    try:
        asyncio.run(ping())
    except (OSError, RedisError) as exc:
        where = urlsplit(url)
        raise FaceCastError(
            f"FACECAST_BROKER_URL: no Redis answers at {where.hostname}:{where.port or 6379} "
            f"({type(exc).__name__})."
        ) from None


def _publish(settings: Settings, folder: Path) -> str:
    """Put a pack into the broker's Redis for every worker (the `scale` extra)."""
    import asyncio

    from core.jobs.taskiq_runner import publish_pack
    from core.storage.blobs import RedisBlobStore, redis_client

    assert settings.broker_url is not None
    url = settings.broker_url.get_secret_value()

    async def publish() -> str:
        redis = redis_client(url)
        try:
            return await publish_pack(RedisBlobStore(redis, settings.broker_prefix), folder)
        finally:
            await redis.aclose()

    return asyncio.run(publish())


@clips_app.command("list")
def clips_list() -> None:
    """Every clip pack, bundled and the operator's."""
    from rich.table import Table

    from core.config import load_settings
    from core.packs.library import ClipLibrary

    with user_errors():
        clips = ClipLibrary(load_settings()).all()
        table = Table(title=f"{len(clips)} clip(s)")
        table.add_column("id", no_wrap=True)
        table.add_column("title", no_wrap=True)
        for column in ("duration", "frames", "coverage"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("licence")
        for clip in clips:
            m = clip.manifest
            table.add_row(
                m.id,
                m.title,
                f"{m.duration:.1f}s",
                str(m.frames),
                f"{m.coverage:.0%}",
                m.licence.name,
            )
        out.print(table)


@clips_app.command("show")
def clips_show(clip_id: Annotated[str, typer.Argument(help="The clip's id.")]) -> None:
    """Everything about one clip pack."""
    from rich.table import Table

    from core.config import load_settings
    from core.packs.library import ClipLibrary

    with user_errors():
        settings = load_settings()
        clip = ClipLibrary(settings).get(clip_id)
        m = clip.manifest
        table = Table(show_header=False, title=m.title)
        rows = [
            ("id", m.id),
            ("folder", f"{clip.folder} ({'bundled' if clip.bundled else 'operator'})"),
            ("tags", ", ".join(m.tags) or "-"),
            (
                "media",
                f"{m.media}: {m.width}x{m.height}, {m.fps:g} fps, {m.frames} frames, "
                f"{m.duration:.2f}s",
            ),
            ("sound", f"{m.audio} (AAC)" if m.audio else "none"),
            ("face visible", f"{m.coverage:.0%} of frames"),
            (
                "head turn",
                "not measured (made by an older version)"
                if m.max_turn is None or m.turned is None
                else f"up to {m.max_turn:.0f}°; past {settings.max_yaw_degrees:g}° (the swap "
                f"fades out) in {m.turned:.0%} of frames",
            ),
            ("landmark jitter", f"{m.jitter_raw:.2%} raw -> {m.jitter_smoothed:.2%} smoothed"),
            ("licence", m.licence.name),
            ("source", m.licence.source),
            ("attribution", m.licence.attribution or "-"),
        ]
        for key, value in rows:
            table.add_row(key, value)
        out.print(table)


@app.command()
def render(
    face: Selfie,
    clip_id: Annotated[str, typer.Option("--clip", "-c", help="The clip's id (clips list).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.mp4 or OUT.gif.")],
    size: Annotated[
        int | None, typer.Option(min=64, help="Long side in pixels (never upscaled).")
    ] = None,
    max_mb: MaxMegabytes = None,
    lenient: Lenient = False,
    engine: EngineOption = None,
) -> None:
    """Render the face from a selfie into a clip, as MP4 or GIF."""
    from core.engines.registry import make_analyzer, make_swapper
    from core.packs.library import Clip, ClipLibrary
    from core.render.tasks import clip_to_file

    with user_errors():
        _animation(output)
        settings = _settings(engine)
        started = time.perf_counter()
        clip: Clip = ClipLibrary(settings).get(clip_id)
        profile = _profile_from(face, settings, make_analyzer(settings), lenient=lenient)
        with _progress() as bar:
            task = bar.add_task(f"rendering {clip.id}", total=clip.manifest.frames)
            result = clip_to_file(
                profile,
                clip,
                make_swapper(settings),
                output,
                settings,
                size=size,
                max_bytes=_budget(max_mb),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                gif_budget=max_mb is None,  # --max-mb replaces the default GIF budget
                marks=_marks(settings),
            )
        elapsed = time.perf_counter() - started
        _print_notes(profile)
        out.print(
            f"Rendered {clip.id!r} to {output}: {result.frames} frames, "
            f"{result.width}x{result.height}, {result.size_bytes / 1e6:.2f} MB in {elapsed:.1f}s.",
            highlight=False,
        )


memes_app = typer.Typer(help="Meme templates: effects on your face or captioned clips.")
app.add_typer(memes_app, name="memes")


@memes_app.command("list")
def memes_list() -> None:
    """Every meme template, bundled and the operator's."""
    from rich.table import Table

    from core.config import load_settings
    from core.render.memes import MemeLibrary

    with user_errors():
        templates = MemeLibrary(load_settings()).all()
        table = Table(title=f"{len(templates)} meme template(s)")
        table.add_column("id", no_wrap=True)
        table.add_column("title", no_wrap=True)
        table.add_column("kind")
        table.add_column("default captions")
        for template in templates:
            m = template.manifest
            kind = f"effect: {m.effect}" if m.effect else f"clip: {m.clip}"
            captions = " / ".join(text for text in (m.top, m.bottom) if text) or "-"
            table.add_row(m.id, m.title, kind, captions)
        out.print(table)


@app.command()
def meme(
    face: Selfie,
    template_id: Annotated[
        str, typer.Option("--template", "-t", help="The template's id (memes list).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.gif or OUT.mp4.")],
    top: Annotated[
        str | None, typer.Option(help="Top caption (replaces the template's; '' for none).")
    ] = None,
    bottom: Annotated[
        str | None, typer.Option(help="Bottom caption (replaces the template's; '' for none).")
    ] = None,
    max_mb: MaxMegabytes = None,
    lenient: Lenient = False,
    engine: EngineOption = None,
) -> None:
    """Make a captioned meme GIF or MP4 with the face from a selfie."""
    from core.engines.registry import make_analyzer, make_swapper
    from core.render.captions import check_caption
    from core.render.memes import MemeLibrary, render_meme_to_file

    with user_errors():
        _animation(output)
        for caption in (top, bottom):
            if caption is not None:
                check_caption(caption)  # before the slow part
        settings = _settings(engine)
        started = time.perf_counter()
        template = MemeLibrary(settings).get(template_id)
        profile = _profile_from(face, settings, make_analyzer(settings), lenient=lenient)
        result = render_meme_to_file(
            profile,
            template,
            settings,
            make_swapper(settings),
            output,
            top=top,
            bottom=bottom,
            max_bytes=_budget(max_mb),
            gif_budget=max_mb is None,
            marks=_marks(settings),
        )
        elapsed = time.perf_counter() - started
        _print_notes(profile)
        out.print(
            f"Made {template.id!r} meme {output}: {result.frames} frames, "
            f"{result.width}x{result.height}, {result.size_bytes / 1e6:.2f} MB in {elapsed:.1f}s.",
            highlight=False,
        )


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="A picture or video (PNG, JPEG, MP4, GIF...).")],
) -> None:
    """Say whether this FaceCast deployment made FILE: its Content Credentials (C2PA) and the
    face watermark. It never says who is in it."""
    from core.engines.registry import make_analyzer
    from core.service.provenance import check_file

    with user_errors():
        if not file.is_file():
            raise BadMedia(f"There is no file {file}.")
        settings = _settings(None)
        report = check_file(file, _marks(settings), make_analyzer(settings))
        out.print(escape(report.describe()), highlight=False, soft_wrap=True)
        if not report.ours:
            raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Run the bot: the built-in web chat (and Telegram/Discord when their tokens are set)."""
    from aiohttp import web

    from core.config import load_settings
    from facecast.logs import setup_logging

    with user_errors():
        settings = load_settings()
    setup_logging(settings)  # before anything logs: no secret reaches the log
    from facecast.app import build

    async def application() -> web.Application:
        built, service, adapters = await build(settings)
        out.print(
            f"FaceCast web chat on http://{host}:{port}/ "
            f"({len(service.clips.all())} clips, {len(service.memes.all())} memes, "
            + (
                "renders on `facecast worker`s"
                if settings.broker_url is not None
                else f"{settings.workers} render worker{'s' if settings.workers != 1 else ''}"
            )
            + "".join(f", {type(a).__name__}" for a in adapters)
            + "). Ctrl+C stops it.",
            highlight=False,
            soft_wrap=True,  # one line, however narrow the terminal: it is a log line
        )
        return built

    with user_errors():
        # Renders are drained on shutdown (FACECAST_SHUTDOWN_GRACE); what is left of any
        # request after that gets a few seconds, not aiohttp's default minute.
        web.run_app(
            application(),
            host=host,
            port=port,
            print=None,
            handle_signals=True,
            shutdown_timeout=5.0,
        )


@app.command()
def worker(
    processes: Annotated[
        int, typer.Option("--processes", "-p", min=1, max=64, help="Jobs run at once.")
    ] = 1,
) -> None:
    """Run render and enrolment jobs for servers that share FACECAST_BROKER_URL (Redis)."""
    import importlib.util

    from core.config import load_settings
    from facecast.logs import setup_logging

    with user_errors():
        settings = load_settings()
        if settings.broker_url is None:
            raise FaceCastError("facecast worker needs FACECAST_BROKER_URL=redis://host:6379/0.")
        if importlib.util.find_spec("taskiq_redis") is None:
            raise FaceCastError(
                "facecast worker needs taskiq-redis: pip install 'facecast[scale]'."
            )
        from core.jobs.worker import run_worker
        from core.storage.blobs import RedisBlobStore, redis_client

        url = settings.broker_url.get_secret_value()
        _ping(url)
        redis = redis_client(url)  # connects in each worker process, not here
        blobs = RedisBlobStore(redis, settings.broker_prefix)
    setup_logging(settings)
    raise typer.Exit(run_worker(settings, redis, blobs, processes))


models_app = typer.Typer(
    help="Neural model files: what is here, intact, and where to get the rest.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")

MODELS_LICENCE = (
    "InsightFace's pretrained models (buffalo_l, inswapper_128) are for non-commercial "
    "research use only."
)


@models_app.callback()
def models_list(context: typer.Context) -> None:
    """List every model of the neural engine: present, missing or wrong hash."""
    from rich.table import Table

    from core.config import load_settings
    from core.engines.registry import model_store

    if context.invoked_subcommand is not None:
        return
    with user_errors():
        store = model_store(load_settings())
        table = Table(title=f"Models in {store.folder}")
        for column in ("model", "file", "status", "licence"):
            table.add_column(column, overflow="fold")
        missing = []
        for state in store.states():
            colour = {"present": "green", "missing": "yellow", "wrong hash": "red"}[state.status]
            table.add_row(
                state.spec.name,
                state.spec.file,
                f"[{colour}]{state.status}[/]",
                state.spec.licence,
            )
            if state.status != "present":
                missing.append(state)
        out.print(table)
        for state in missing:
            out.print(
                f"{state.spec.name}: put {state.spec.file} into {store.folder} "
                f"(from {state.spec.source}) or run `facecast models fetch {state.spec.name}`.",
                highlight=False,
            )
        out.print(MODELS_LICENCE, highlight=False)


@models_app.command("fetch")
def models_fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help="Models to fetch (default: all).")
    ] = None,
) -> None:
    """Download models on purpose, keeping each only if its sha256 matches."""
    from core.config import load_settings
    from core.engines.registry import model_store

    with user_errors():
        store = model_store(load_settings())
        for name in names or list(store.registry):
            path = store.fetch(name)
            out.print(f"{name}: {path} (sha256 verified)", highlight=False)
        out.print(MODELS_LICENCE, highlight=False)


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="facecast")


if __name__ == "__main__":
    main()
