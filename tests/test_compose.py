"""compose.yaml is checked without a Docker engine: its services, images, wiring, secrets
and the commands it runs, against the real Dockerfile, settings and command line.

The file is read by a small reader of the YAML it uses (block mappings and lists, plain and
quoted scalars, flow lists); anything else in it (anchors, tags, block scalars) fails the
test rather than being misread. Where PyYAML is installed the two readings must agree, and
where ``docker compose`` runs, it validates the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import typer.main

from core.config import Settings
from facecast.cli import app

from .conftest import REPO

COMPOSE = REPO / "compose.yaml"
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY")
INTERPOLATION = re.compile(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}")


# -- a reader for the YAML subset compose.yaml is written in ---------------------------------


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def _scalar(text: str) -> Any:
    text = text.strip()
    if text == "":
        return None
    if text[0] in "&*!|>{":
        raise ValueError(f"not in the subset this reader takes: {text!r}")
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"a flow list must be on one line: {text!r}")
        inner = text[1:-1].strip()
        return [_scalar(part) for part in _split_flow(inner)] if inner else []
    if text[0] in "'\"":
        if len(text) < 2 or text[-1] != text[0]:
            raise ValueError(f"unterminated quote: {text!r}")
        return text[1:-1]
    return text


def _split_flow(inner: str) -> list[str]:
    parts, quote, current = [], "", ""
    for char in inner:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ",":
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def _key_value(text: str) -> tuple[str, str] | None:
    """('key', 'rest') for 'key: rest' or 'key:', outside quotes; None if not a mapping."""
    match = re.match(r"""^("[^"]*"|'[^']*'|[^\s'"][^:]*?):(\s+(.*))?$""", text)
    if match is None:
        return None
    return str(_scalar(match.group(1))), match.group(3) or ""


def read_yaml(text: str) -> Any:
    lines = []
    for raw in text.splitlines():
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError("tabs in indentation")
        stripped = _strip_comment(raw)
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip()))
    value, end = _block(lines, 0, lines[0][0] if lines else 0)
    if end != len(lines):
        raise ValueError(f"unexpected indentation at: {lines[end][1]!r}")
    return value


def _block(lines: list[tuple[int, str]], start: int, indent: int) -> tuple[Any, int]:
    if lines[start][1].startswith("- ") or lines[start][1] == "-":
        return _sequence(lines, start, indent)
    return _mapping(lines, start, indent)


def _mapping(lines: list[tuple[int, str]], at: int, indent: int) -> tuple[dict[str, Any], int]:
    found: dict[str, Any] = {}
    while at < len(lines) and lines[at][0] == indent:
        pair = _key_value(lines[at][1])
        if pair is None:
            raise ValueError(f"expected 'key: value': {lines[at][1]!r}")
        key, rest = pair
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        at += 1
        if rest:
            found[key] = _scalar(rest)
        elif at < len(lines) and lines[at][0] > indent:
            found[key], at = _block(lines, at, lines[at][0])
        elif at < len(lines) and lines[at][0] == indent and lines[at][1].startswith("- "):
            found[key], at = _sequence(lines, at, indent)  # a list at its key's indent
        else:
            found[key] = None
    return found, at


def _sequence(lines: list[tuple[int, str]], at: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while at < len(lines) and lines[at][0] == indent and lines[at][1].startswith("-"):
        item = lines[at][1][1:].strip()
        if item and _key_value(item) is not None and not item.startswith(("'", '"', "[")):
            # "- key: value" opens a mapping whose keys sit two columns in.
            inner = [(indent + 2, item), *lines[at + 1 :]]
            value, used = _mapping(inner, 0, indent + 2)
            items.append(value)
            at += used
        else:
            items.append(_scalar(item))
            at += 1
    return items, at


# -- the checks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed = read_yaml(COMPOSE.read_text())
    assert isinstance(parsed, dict)
    return parsed


def test_the_reader_agrees_with_pyyaml_where_installed(compose: dict[str, Any]) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed; the reader stands alone")

    def as_text(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): as_text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_text(v) for v in value]
        if isinstance(value, bool):
            return str(value).lower()
        return None if value is None else str(value)

    assert as_text(yaml.safe_load(COMPOSE.read_text())) == compose


def test_the_reader_refuses_what_it_does_not_understand() -> None:
    for text in ("a: &anchor 1\n", "a: |\n  text\n", "a: !tag x\n", "a:\n\tb: 1\n", "a: {b: 1}\n"):
        with pytest.raises(ValueError):  # noqa: PT011 - each is its own refusal
            read_yaml(text)
    assert read_yaml("a:\n  - x: 1\n    y: [p, 'q']\n  - z\nb: 'c # d'  # e\n") == {
        "a": [{"x": "1", "y": ["p", "q"]}, "z"],
        "b": "c # d",
    }


def test_docker_compose_accepts_it_where_docker_runs(tmp_path: Any) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command here")
    found = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip("docker has no compose plugin here")
    env = {"POSTGRES_PASSWORD": "x", "FACECAST_SECRET_KEY": "y", "PATH": "/usr/bin:/bin"}
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_services_are_all_there_and_built_from_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "serve", "worker", "worker-gpu"} <= set(services)
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M))
    for name, service in services.items():
        assert service.get("image") or service.get("build"), f"{name}: no image, no build"
        build = service.get("build")
        if build is not None:
            assert (REPO / build["context"] / "Dockerfile").is_file()
            assert build["target"] in targets, f"{name}: no Dockerfile stage {build['target']}"
    assert services["worker-gpu"]["build"]["target"] == "gpu"
    assert services["serve"]["build"]["target"] != "gpu"
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = _mount(mount)[0]
            if not source.startswith(("/", ".", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def _mount(volume: str) -> list[str]:
    """[source, target, mode...] of "source:target[:mode]", with ${...} in the source."""
    return INTERPOLATION.sub("$", volume).split(":")


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {name: value or None for name, _, value in (i.partition("=") for i in env)}
    return dict(env)


def test_front_end_and_workers_meet_at_the_redis_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_services = {n for n, s in services.items() if str(s.get("image", "")).startswith("redis")}
    for name in ("serve", "worker", "worker-gpu"):
        env = _environment(services[name])
        url = env.get("FACECAST_BROKER_URL") or ""
        host = re.match(r"redis://([^:/@]+)(:\d+)?/\d+$", url)
        assert host is not None, f"{name}: FACECAST_BROKER_URL={url!r} is not redis://host/db"
        assert host.group(1) in redis_services
        assert host.group(1) in services[name]["depends_on"]
    serve = services["serve"]
    assert "postgres" in serve["depends_on"]
    database = _environment(serve)["FACECAST_DATABASE_URL"] or ""
    assert database.startswith("postgresql+asyncpg://")
    assert "@postgres:" in database
    gpu = services["worker-gpu"]
    assert _environment(gpu)["FACECAST_ENGINE"] == "insightface"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"]
    models = _environment(gpu)["FACECAST_MODELS_DIR"]
    assert models in [_mount(m)[1] for m in gpu["volumes"]], "no model folder"


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in _environment(service).items():
            if value is None:
                continue  # passed through from the operator's environment when set
            text = str(value)
            if SECRET_NAME.search(variable):
                assert INTERPOLATION.fullmatch(text), f"{name}: {variable} is written out"
            credentials = re.search(r"://[^:/@]+:([^@]+)@", text)
            if credentials is not None:
                assert INTERPOLATION.fullmatch(credentials.group(1)), f"{name}: password in URL"


def test_every_setting_named_is_one_facecast_knows(compose: dict[str, Any]) -> None:
    known = set(Settings.model_fields)
    for name, service in compose["services"].items():
        for variable in _environment(service):
            if variable.startswith("FACECAST_") and variable != "FACECAST_MODELS_HOST_DIR":
                assert variable.removeprefix("FACECAST_").lower() in known, f"{name}: {variable}"


def _facecast_services(compose: dict[str, Any]) -> list[str]:
    services = compose["services"].items()
    return [n for n, s in services if str(s.get("image", "")).startswith("facecast")]


@pytest.mark.parametrize("service", ["serve", "worker", "worker-gpu"])
def test_commands_are_ones_the_cli_accepts(compose: dict[str, Any], service: str) -> None:
    assert service in _facecast_services(compose)
    command = compose["services"][service]["command"]
    group: Any = typer.main.get_command(app)
    assert command[0] in group.commands, f"{service}: facecast has no command {command[0]!r}"
    accepted = {opt for param in group.commands[command[0]].params for opt in param.opts}
    for word in command[1:]:
        if word.startswith("-"):
            assert word in accepted, f"{service}: facecast {command[0]} has no {word}"
