"""What a user waits for at the command line: whole-process times beside in-process ones.

Runs, as separate processes the way a user types them, ``facecast --help`` and
``facecast render --face clips/examples/astronaut.jpg --clip astronaut-pan -o OUT.mp4``
(``--repeat`` times each, after one warm-up run that fills the OS file cache), and beside
them two floors measured in the same run: a bare ``python -c pass`` (the interpreter's own
start) and the same render in this process (enrol + render + encode, models already
loaded). What is left between the in-process render and the whole process is imports and
model loading. Targets on this machine: ``--help`` under 1 s, whole-process render under
2.5 s.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
SELFIE = REPO / "clips" / "examples" / "astronaut.jpg"
CLIP = "astronaut-pan"


def facecast_command() -> list[str]:
    found = Path(sys.executable).with_name("facecast")
    if found.exists():
        return [str(found)]
    on_path = shutil.which("facecast")
    if on_path is None:
        raise SystemExit("the facecast command is not installed: run `make setup` first")
    return [on_path]


def wall(command: list[str], repeat: int) -> list[float]:
    """Seconds per run of ``command`` as a new process (one warm-up run first)."""
    results = []
    for index in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        if index:
            results.append(time.perf_counter() - started)
    return results


def in_process(out: Path, repeat: int) -> list[float]:
    """The same render with the models loaded once, as `facecast serve`'s workers do."""
    from core.config import Settings
    from core.engines.registry import make_analyzer, make_swapper
    from core.faces.profile import enroll
    from core.media.images import load_picture
    from core.packs.library import ClipLibrary
    from core.render.tasks import clip_to_file

    settings = Settings(data_dir=out / "data")
    analyzer = make_analyzer(settings)
    clip = ClipLibrary(settings).get(CLIP)
    results = []
    for index in range(repeat + 1):
        started = time.perf_counter()
        profile = enroll(load_picture(SELFIE, settings, selfie=True), analyzer, settings)
        clip_to_file(profile, clip, make_swapper(settings), out / "in.mp4", settings)
        if index:
            results.append(time.perf_counter() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    command = facecast_command()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        render = [*command, "render", "--face", str(SELFIE), "--clip", CLIP]
        rows = [
            (
                "python -c pass (floor: the interpreter)",
                wall([sys.executable, "-c", "pass"], args.repeat),
                None,
            ),
            ("facecast --help", wall([*command, "--help"], args.repeat), 1.0),
            ("render, in this process (floor: models loaded)", in_process(out, args.repeat), None),
            (
                "facecast render, whole process",
                wall([*render, "-o", str(out / "cli.mp4")], args.repeat),
                2.5,
            ),
        ]
    floor = statistics.median(rows[2][1])
    table = Table(
        title=f"{CLIP} to MP4 from the command line: {cpu_model()}, "
        f"{args.repeat} runs, Python {platform.python_version()}"
    )
    for column in ("what", "median", "min", "x in-process render", "target"):
        table.add_column(column, justify="left" if column == "what" else "right", no_wrap=True)
    for name, seconds, target in rows:
        median = statistics.median(seconds)
        table.add_row(
            name,
            f"{median:.2f} s",
            f"{min(seconds):.2f} s",
            f"{median / floor:.2f}",
            "-" if target is None else f"< {target:.1f} s",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
