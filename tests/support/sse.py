"""Reading Server-Sent Events from a streamed test response."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator


def events(chunks: Iterator[bytes], until: Callable[[list[tuple[str, dict]]], bool]) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Parse SSE frames from a streamed body until `until(events)` holds or the stream ends."""
    seen: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in frame.decode().splitlines() if ": " in line and not line.startswith(":"))
            if "event" in fields:
                seen.append((fields["event"], json.loads(fields["data"])))
        if until(seen):
            break
    return seen
