"""The test suite's one wait: poll a probe until it is truthy, or fail naming what did not happen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class WaitTimeout(TimeoutError, AssertionError):
    """A condition did not come true in time (a TimeoutError that pytest reports as a failed assertion)."""


def wait_until(
    probe: Callable[[], Any],
    timeout: float = 20.0,
    what: str = "condition",
    logs: Callable[[], str] | None = None,
    every: float = 0.02,
) -> Any:
    """Poll probe every `every` seconds until it returns something truthy (returned); WaitTimeout with logs if not."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n{logs()[-4000:]}" if logs is not None else ""
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(every)
