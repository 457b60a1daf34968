"""`--workers N`: run N ingest processes in one MQTT 5 shared subscription group and stop them together."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from contracts.topics import ingest_account
from dashboard.ingest.worker import DEFAULT_SHARED_GROUP

logger = logging.getLogger("dashboard.ingest")
PR_SET_PDEATHSIG = 1


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def worker_count(text: str) -> int:
    """argparse type for --workers: `auto` (one per usable core) or a whole number from 1."""
    if text == "auto":
        return usable_cores()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'auto' nor a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} workers: must be at least 1")
    return value


def worker_commands(args: argparse.Namespace, count: int, username: str) -> list[list[str]]:
    """One `python -m dashboard.ingest --workers 1 ...` command line per worker."""
    group = args.shared or DEFAULT_SHARED_GROUP
    commands = []
    for n in range(1, count + 1):
        name = f"{args.worker}-{n}" if args.worker else str(n)
        command = [sys.executable, "-m", "dashboard.ingest", "--workers", "1", "--confs", str(args.confs),
                   "--shared", group, "--worker", name, "--username", ingest_account(username, n),
                   "--batch-size", str(args.batch_size), "--flush-ms", str(args.flush_ms)]
        # Worker 1 alone runs the rollout engine, retention and alerts, and asks the nodes to replay after a
        # lost link: one sender keeps commands in order.
        if n > 1 or args.no_engine:
            command.append("--no-engine")
        if n > 1 or args.no_replay_requests:
            command.append("--no-replay-requests")
        if args.verbose:
            command.append("-v")
        commands.append(command)
    return commands


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervising process dies, so no worker outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def supervise(commands: list[list[str]], stop_timeout_s: float = 60.0) -> int:
    """Run the workers until SIGTERM/SIGINT (then stop them all: 0) or until one exits (stop the rest: 1)."""
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [subprocess.Popen(command, preexec_fn=_die_with_parent) for command in commands]
    logger.info("ingest running %d workers (pids %s)", len(processes), ", ".join(str(p.pid) for p in processes))
    failed: tuple[int, int] | None = None
    while not stopping.is_set() and failed is None:
        for n, process in enumerate(processes, 1):
            if (code := process.poll()) is not None:
                failed = n, code
                break
        stopping.wait(0.2)
    if failed is not None:
        # A worker that died held messages it had not acknowledged: the broker hands them to the others.
        # Exiting non-zero lets the supervisor (systemd Restart=on-failure, compose restart:) start a whole group.
        logger.error("ingest worker %d exited with code %d; stopping the others", *failed)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("ingest worker pid %d did not stop in %.0f s; killing it", process.pid, stop_timeout_s)
            process.kill()
            process.wait()
    return 1 if failed is not None else 0
