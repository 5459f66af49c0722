"""Parse Server-Sent Events frames as a client would."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_frames(frames: Iterable[str]) -> list[Any]:
    """`data: {...}\\n\\n` frames -> JSON objects; the terminator stays the string "[DONE]"."""
    out: list[Any] = []
    for frame in frames:
        assert frame.startswith("data: "), frame
        assert frame.endswith("\n\n"), frame
        payload = frame[len("data: ") : -2]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def split_stream(body: str) -> list[str]:
    """A whole event-stream body -> its frames (each ending in a blank line)."""
    return [part + "\n\n" for part in body.split("\n\n") if part]
