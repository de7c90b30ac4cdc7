"""The ``facecast`` command line.

User mistakes (a missing file, a photo without a face, ...) end with exit code 2 and one
line on stderr; they never print a traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core import (
    BadMedia,
    FaceCastError,
    FaceCropped,
    FaceIndexOutOfRange,
    FaceTooBlurry,
    FaceTooSmall,
    FaceTurnedAway,
    NoFaceFound,
    Settings,
    add_ai_label,
    build_profile,
    check_quality,
    enroll,
    get_swapper,
    image_limits,
    load_image,
    make_analyzer,
    save_image,
)

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
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(USER_ERROR) from None


@app.command()
def swap(
    face: Annotated[Path, typer.Option("--face", "-f", help="The selfie whose face to use.")],
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
            "shows). Default: every face.",
        ),
    ] = None,
    lenient: Annotated[
        bool,
        typer.Option(
            "--lenient",
            help="Accept a selfie that is blurry, turned or cut off instead of refusing it.",
        ),
    ] = False,
) -> None:
    """Put the face from a selfie onto the faces in a picture."""
    with user_errors():
        if output.suffix.lower() not in IMAGE_SUFFIXES:
            raise BadMedia(f"The output must end in {', '.join(IMAGE_SUFFIXES)}: got {output}.")
        settings = Settings()
        started = time.perf_counter()
        analyzer = make_analyzer(settings)
        selfie = load_image(face, **image_limits(settings))
        if lenient:
            faces = analyzer.detect(selfie, embed=True)
            if not faces:
                raise NoFaceFound()
            best = max(faces, key=lambda f: f.quality.eye_distance)
            profile = build_profile(selfie, best)
        else:
            profile = enroll(selfie, analyzer, settings)

        picture = load_image(target, **image_limits(settings))
        targets = analyzer.detect(picture)
        if not targets:
            raise NoFaceFound(f"I couldn't find a face in {target.name} to swap into.")
        if target_face is not None:
            if target_face > len(targets):
                raise FaceIndexOutOfRange(
                    f"{target.name} has {len(targets)} face(s); pick --target-face "
                    f"1 to {len(targets)}."
                )
            targets = [targets[target_face - 1]]
        swapper = get_swapper(settings.engine)
        result = picture
        for found in targets:
            result = swapper.swap(profile, result, found.landmarks)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_image(add_ai_label(result), output)
        elapsed = time.perf_counter() - started
        for note in profile.notes:
            err.print(f"note: {note}", highlight=False, soft_wrap=True)
        out.print(
            f"Swapped {len(targets)} face(s) into {output} in {elapsed:.1f}s.", highlight=False
        )


@app.command()
def faces(
    image: Annotated[Path, typer.Argument(help="A picture to look for faces in.")],
) -> None:
    """List the faces in a picture, left to right, with their boxes and quality."""
    with user_errors():
        settings = Settings()
        picture = load_image(image, **image_limits(settings))
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


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="facecast")


if __name__ == "__main__":
    main()
