"""Processes of the demo: the broker, the dashboard (web + ingest), edge nodes, and their confs files."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


class DemoError(RuntimeError):
    """A step of the demo that could not be done; the message says what to do."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the kernel says is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def choose_port(wanted: int, what: str, key: str, taken: set[int]) -> int:
    """The configured port, or a free one with a note saying which key to change."""
    if wanted not in taken and port_is_free(wanted):
        taken.add(wanted)
        return wanted
    chosen = free_port()
    while chosen in taken:
        chosen = free_port()
    taken.add(chosen)
    print(f"  note: port {wanted} for the {what} is taken on this machine; using {chosen} instead "
          f"(set {key} in confs.json to choose another)")
    return chosen


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30.0) -> None:
    """Wait until something accepts TCP on port, failing fast if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the {what} exited with code {process.returncode}; see {log}:\n{tail(log)}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise DemoError(f"the {what} did not open port {port} within {timeout:.0f} s; see {log}")


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> Path:
    """Write a JSON file with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(mode)
    return path


def write_secret(path: Path, value: str) -> str:
    """Write a secret into a mode-600 file and return its path as text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return str(path)


def development_key(path_text: str) -> tuple[Path, str]:
    """The trainer's development signing key (made as `python -m trainer keys` would) and its public half."""
    from contracts.model_package import generate_private_key, load_private_key, public_key_text, save_private_key

    path = Path(path_text)
    path = path if path.is_absolute() else ROOT / path
    if not path.exists():
        save_private_key(generate_private_key(), path)
    return path, public_key_text(load_private_key(path))


def trusted_with(keys: list[str], extra: str) -> list[str]:
    """The trusted key list of the confs the demo writes: the configured keys plus extra (confs.json is left alone)."""
    return keys if extra in keys else [*keys, extra]


@dataclass
class Stack:
    """Every process the demo started, stopped in reverse order."""

    state: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def log_path(self, name: str) -> Path:
        """Where a process's output goes."""
        return self.state / "logs" / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a process in its own process group, logging to var/demo/logs."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")
        self.logs.append(log)
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.processes.append((name, process))
        return process

    def check_alive(self, ignore: Collection[str] = ()) -> None:
        """Raise if any process has died, but those named in ignore (watched elsewhere)."""
        for name, process in self.processes:
            if name not in ignore and process.poll() is not None:
                raise DemoError(f"{name} exited with code {process.returncode}; see "
                                f"{self.log_path(name)}:\n{tail(self.log_path(name))}")

    def stop(self) -> None:
        """SIGTERM every process (newest first), then SIGKILL what is left after a grace period."""
        for name, process in reversed(self.processes):
            if process.poll() is None:
                print(f"  stopping {name}")
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self.logs:
            log.close()


def run_cli(argv: list[str], env: dict[str, str], what: str) -> str:
    """Run a set-up command and return its output, or raise with its output."""
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"{what} failed ({' '.join(argv[1:4])}…):\n{result.stdout}{result.stderr}")
    return result.stdout


def find_secret(output: str, label: str) -> str:
    """Pull a secret printed after `label:` by the dashboard CLI."""
    match = re.search(rf"{re.escape(label)}:?\s+(\S+)\s*$", output, re.MULTILINE)
    if not match:
        raise DemoError(f"could not find {label!r} in the CLI's output:\n{output}")
    return match.group(1)


def find_mosquitto() -> str:
    """Path of the mosquitto binary."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise DemoError("mosquitto is not installed: run `make demo` (it installs it) or `apt-get install mosquitto`")
    return found
