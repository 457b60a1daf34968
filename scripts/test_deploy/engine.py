"""A Docker engine for the run: the one that answers already, or a private dockerd under var/ that is undone afterwards."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
BRIDGE = "docker0"


class EngineError(RuntimeError):
    """No engine could be reached or started."""


def run(args: list[str], *, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raises EngineError with its stderr when check fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, input=input_text)
    if check and result.returncode != 0:
        raise EngineError(f"{' '.join(args[:4])} ... exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result


def answers(host: str) -> bool:
    """True if a Docker daemon answers on host (a DOCKER_HOST value)."""
    env = {**os.environ, "DOCKER_HOST": host}
    try:
        return run(["docker", "version", "--format", "{{.Server.Version}}"], check=False, timeout=15, env=env).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class HostNetwork:
    """What dockerd changes on the host: IPv4 forwarding, the FORWARD policy, the iptables tables, the bridge."""

    ip_forward: str
    forward_policy: str
    iptables: str
    had_bridge: bool

    @classmethod
    def save(cls) -> "HostNetwork":
        """Record the host's current state."""
        forward = run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
        # iptables-save only: listing a chain would create the filter table it is about to record as absent.
        saved = run(["iptables-save"]).stdout
        policy = next((line.split()[1] for line in saved.splitlines() if line.startswith(":FORWARD ")), "ACCEPT")
        bridge = run(["ip", "link", "show", BRIDGE], check=False).returncode == 0
        return cls(forward, policy, saved, bridge)

    def restore(self) -> list[str]:
        """Put the recorded state back; returns what could not be restored (empty when all was)."""
        problems = []
        if self.iptables.strip() and run(["iptables-restore"], check=False, input_text=self.iptables).returncode != 0:
            problems.append("iptables-restore")
        if run(["iptables", "-P", "FORWARD", self.forward_policy], check=False).returncode != 0:
            problems.append("FORWARD policy")
        saved_tables = {line[1:].strip() for line in self.iptables.splitlines() if line.startswith("*")}
        current = run(["iptables-save"], check=False).stdout
        added = {line[1:].strip() for line in current.splitlines() if line.startswith("*")} - saved_tables
        for table in sorted(added):
            for args in (["-F"], ["-X"]):
                if run(["iptables", "-t", table, *args], check=False).returncode != 0:
                    problems.append(f"iptables -t {table} {args[0]}")
        if added and "nf_tables" in run(["iptables", "-V"], check=False).stdout:
            for table in sorted(added):  # with the nftables backend the emptied tables themselves can go too
                run(["nft", "delete", "table", "ip", table], check=False)
        if run(["sysctl", "-q", "-w", f"net.ipv4.ip_forward={self.ip_forward}"], check=False).returncode != 0:
            problems.append("ip_forward")
        if not self.had_bridge and run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
            if run(["ip", "link", "delete", BRIDGE], check=False).returncode != 0:
                problems.append(f"bridge {BRIDGE}")
        return problems


class PrivateEngine:
    """dockerd with its own data root, exec root, socket and pid file under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_root = root / "data"
        self.exec_root = root / "exec"
        self.socket = root / "docker.sock"
        self.pid_file = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.network: HostNetwork | None = None

    @property
    def host(self) -> str:
        """The DOCKER_HOST value of this engine."""
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 60) -> None:
        """Record the host's network state, start dockerd and wait until it answers."""
        for path in (self.data_root, self.exec_root):
            path.mkdir(parents=True, exist_ok=True)
        self.network = HostNetwork.save()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                 "-H", self.host, "--pidfile", str(self.pid_file)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not answers(self.host):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise EngineError(f"dockerd did not come up (see {self.log})")
            time.sleep(0.5)
        logger.info("dockerd %d answers on %s", self.process.pid, self.socket)

    def stop(self, timeout_s: float = 60) -> list[str]:
        """Stop dockerd by its PID and restore the host's network; returns what could not be restored."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.network.restore() if self.network is not None else []


def docker_host(root: Path) -> tuple[str, PrivateEngine | None]:
    """DOCKER_HOST to use and the private engine started for it (None when one already answered)."""
    for host in (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET):
        if host and answers(host):
            logger.info("using the Docker engine that answers on %s", host)
            return host, None
    engine = PrivateEngine(root)
    try:
        engine.start()
    except BaseException:
        engine.stop()
        raise
    return engine.host, engine
