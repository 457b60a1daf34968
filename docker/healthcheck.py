"""Container health probe: exit 0 if URL answers with an accepted HTTP status, else 1."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def probe(url: str, accepted: set[int], timeout_s: float = 4.0) -> bool:
    """True if a request to url gets one of the accepted statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError):
        return False
    return status in accepted


def main(argv: list[str]) -> int:
    """`healthcheck.py URL [STATUS ...]`; the default accepted status is 200."""
    if not argv or not all(code.isdigit() for code in argv[1:]):
        print("usage: healthcheck.py URL [STATUS ...]", file=sys.stderr)
        return 2
    accepted = {int(code) for code in argv[1:]} or {200}
    return 0 if probe(argv[0], accepted) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
