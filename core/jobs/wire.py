"""Job arguments and results as JSON, for the broker: never pickle across machines.

A worker holds no secret and a front-end holds them all, so neither trusts what the other
sends to run code: values travel as JSON, and only the dataclasses listed here (and those
a task module adds with :func:`allow`) are rebuilt on the other side. Bytes larger than
:data:`INLINE_BYTES` are cut out into separate blobs so that broker messages stay small.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from core.faces.liveness import LivenessLimits, LivenessOrder, LivenessReport
from core.media.provenance import Marks
from core.render.tasks import EnrolConfig, EnrolOrder, RenderConfig, RenderOrder, RenderResult

INLINE_BYTES = 32 * 1024

_TYPES: dict[str, type[Any]] = {}


def allow(cls: type[Any]) -> type[Any]:
    """Let dataclass ``cls`` travel (a test task module may add its own)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    _TYPES[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


for _cls in (
    EnrolConfig,
    EnrolOrder,
    RenderConfig,
    RenderOrder,
    RenderResult,
    LivenessLimits,
    LivenessOrder,
    LivenessReport,
    Marks,
):
    allow(_cls)


class WireError(ValueError):
    """A message that is not what this version sends."""


def dumps(value: Any) -> tuple[str, dict[str, bytes]]:
    """``(json, blobs)``: ``value`` as JSON, with each large bytes value replaced by a
    reference to an entry of ``blobs``."""
    blobs: dict[str, bytes] = {}

    def encode(item: Any) -> Any:
        if item is None or isinstance(item, bool | int | float | str):
            return item
        if isinstance(item, bytes):
            if len(item) > INLINE_BYTES:
                name = f"b{len(blobs)}"
                blobs[name] = item
                return {"~blob": name}
            return {"~bytes": base64.b64encode(item).decode("ascii")}
        if isinstance(item, list | tuple):
            return {"~list": [encode(part) for part in item]}
        if isinstance(item, dict):
            return {"~dict": [[encode(k), encode(v)] for k, v in item.items()]}
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            name = f"{type(item).__module__}.{type(item).__qualname__}"
            if name not in _TYPES:
                raise TypeError(f"{name} may not travel to a worker (core.jobs.wire.allow)")
            fields = {f.name: encode(getattr(item, f.name)) for f in dataclasses.fields(item)}
            return {"~type": name, "fields": fields}
        raise TypeError(f"{type(item).__name__} may not travel to a worker")

    return json.dumps(encode(value)), blobs


def blob_names(text: str) -> list[str]:
    """The blob references in a message made by :func:`dumps`."""
    names: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            if "~blob" in item:
                names.append(str(item["~blob"]))
            for part in item.values():
                walk(part)
        elif isinstance(item, list):
            for part in item:
                walk(part)

    walk(json.loads(text))
    return names


def loads(text: str, blobs: Mapping[str, bytes] | None = None) -> Any:
    """The value :func:`dumps` made ``text`` (and ``blobs``) from."""

    def decode(item: Any) -> Any:
        if item is None or isinstance(item, bool | int | float | str):
            return item
        if not isinstance(item, dict):
            raise WireError("unexpected JSON value")
        if "~bytes" in item:
            return base64.b64decode(item["~bytes"])
        if "~blob" in item:
            if blobs is None or item["~blob"] not in blobs:
                raise WireError("a blob of the message is missing (expired?)")
            return blobs[item["~blob"]]
        if "~list" in item:
            return tuple(decode(part) for part in item["~list"])
        if "~dict" in item:
            return {decode(k): decode(v) for k, v in item["~dict"]}
        if "~type" in item:
            cls = _TYPES.get(str(item["~type"]))
            if cls is None:
                raise WireError(f"unknown type {item['~type']!r}")
            return cls(**{name: decode(value) for name, value in item["fields"].items()})
        raise WireError("unexpected JSON object")

    try:
        return decode(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise WireError(str(exc)) from exc


__all__ = ["INLINE_BYTES", "WireError", "allow", "blob_names", "dumps", "loads"]
