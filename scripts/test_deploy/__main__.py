"""`python -m scripts.test_deploy`: build and run the whole system in containers, prove it works, take it all down.

Prints one JSON line: what was proved and how long each step took. Exits 1 with a one-line reason on any failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .base_image import ensure_base
from .dashboard_client import Dashboard, DashboardError
from .engine import EngineError, PrivateEngine, docker_host
from .proofs import ProofFailed, broker_restart, inbox_result, rollout, sample_images
from .stack import NODES, Stack

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "var" / "test-deploy"
ENGINE_ROOT = ROOT / "var" / "docker-engine"
RELEASED = ROOT / "models" / "all-small-cnn-1.4.0.tar.gz"
ROLLOUT_VERSION = "1.5.1"
STREAMED = 16
T = TypeVar("T")
logger = logging.getLogger("test_deploy")


class Timer:
    """Seconds per named step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def step(self, name: str, action: Callable[[], T]) -> T:
        """Run action, record its duration under name, log it."""
        logger.info("== %s", name)
        start = time.monotonic()
        try:
            return action()
        finally:
            self.seconds[name] = round(time.monotonic() - start, 1)
            logger.info("   %s took %.1f s", name, self.seconds[name])


def build(stack: Stack, base: str) -> None:
    """Build the three images (broker, dashboard, edge node) in parallel from the base image."""
    stack.env["BASE_IMAGE"] = base
    stack.compose("build", "--parallel", "broker", "dashboard-web", "edge-node-1", timeout=1500)


def up(stack: Stack) -> tuple[str, str]:
    """Broker and dashboard up, admin and nodes provisioned, nodes up; (admin password, API token)."""
    stack.write_override()  # host ports chosen just before they are bound
    stack.compose("up", "-d", "--no-build", "broker", "dashboard-web", "dashboard-ingest", timeout=600)
    stack.wait_healthy(("broker", "dashboard-web", "dashboard-ingest"))
    password, api_token, tokens = stack.provision()
    stack.prepare(tokens)
    stack.compose("up", "-d", "--no-build", *NODES, timeout=600)
    stack.wait_healthy(("broker", "dashboard-web", "dashboard-ingest", *NODES))
    return password, api_token


def prove(stack: Stack, timer: Timer, proved: dict[str, Any]) -> None:
    """Build, start and exercise the system, filling proved."""
    base, how = timer.step("base_image", lambda: ensure_base(ENGINE_ROOT, stack.env, os.environ.get("BASE_IMAGE")))
    proved["base_image"] = {"image": base, "from": how}
    timer.step("build", lambda: build(stack, base))
    password, api_token = timer.step("up_healthy", lambda: up(stack))
    dashboard = Dashboard(f"http://127.0.0.1:{stack.ports['DASHBOARD_PORT']}", api_token)
    images = sample_images(ROOT, WORK / "images", STREAMED + 1)
    proved["inbox_result"] = timer.step("inbox_result", lambda: inbox_result(stack, dashboard, images[0], password))
    proved["rollout"] = timer.step("rollout", lambda: rollout(stack, dashboard, RELEASED, ROLLOUT_VERSION))
    proved["broker_restart"] = timer.step("broker_restart",
                                          lambda: broker_restart(stack, dashboard, images[1:], STREAMED // 4))


def _interrupt(signum: int, _frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt so that the clean-up runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run every step, always take the system and any private engine down, print the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m scripts.test_deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the containers running (for debugging)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout's SIGTERM still cleans up
    timer, proved, failure = Timer(), {}, None
    engine: PrivateEngine | None = None
    stack: Stack | None = None
    try:
        host, engine = timer.step("dockerd", lambda: docker_host(ENGINE_ROOT))
        stack = Stack(ROOT, WORK, {**os.environ, "DOCKER_HOST": host})
        stack.write_override()
        stack.prepare()  # broker config and env files first: compose refuses to run without the env files
        stack.down()
        prove(stack, timer, proved)
    except (EngineError, ProofFailed, DashboardError, OSError, ValueError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as exc:  # anything else still takes the system down and says what broke
        logger.exception("unexpected error")
        failure = f"unexpected {type(exc).__name__}: {exc}"
    finally:
        if stack is not None and failure and not args.keep:
            logs = stack.compose("logs", "--tail", "30", check=False, timeout=120)
            print(logs.stdout[-8000:], file=sys.stderr)
        if stack is not None and not args.keep:
            timer.step("down", stack.down)
        if engine is not None and not args.keep:
            problems = timer.step("stop_dockerd", engine.stop)
            if problems:
                failure = failure or f"host network not fully restored: {problems}"
    print(json.dumps({"bench": "test_deploy", "ok": failure is None, "proved": proved, "seconds": timer.seconds,
                      "total_s": round(sum(timer.seconds.values()), 1)}))
    if failure:
        print(f"test-deploy failed: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
