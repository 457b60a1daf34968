"""The compose project under test: its files, its commands, its containers and their health."""

from __future__ import annotations

import json
import random
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.model_package import public_key_text

from .engine import EngineError, run

PROJECT = "alledge-test-deploy"
NODES = ("edge-node-1", "edge-node-2")
NODE_CONFS = {"edge-node-1": "docker/confs.json", "edge-node-2": "docker/confs.edge-node-2.json"}
PORT_VARIABLES = ("BROKER_PORT", "DASHBOARD_PORT", "EDGE_NODE_1_PORT", "EDGE_NODE_2_PORT")
TOKEN = re.compile(r"download token:\s+(\S+)")
PASSWORD = re.compile(r"password \(shown once\):\s+(\S+)")


def free_port(taken: set[int]) -> int:
    """A TCP port free on all interfaces now, below Linux's ephemeral range so no outgoing connection takes it."""
    while True:
        port = random.randrange(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
        return port


@dataclass
class Stack:
    """docker-compose with the repo's file plus a generated override that trusts the run's signing key."""

    root: Path
    work: Path
    env: dict[str, str]
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def override(self) -> Path:
        """The generated compose override file."""
        return self.work / "docker-compose.override.json"

    def write_override(self) -> None:
        """Confs that also trust this run's throw-away key, mounted over /app/confs.json; host ports free now."""
        self.work.mkdir(parents=True, exist_ok=True)
        services: dict[str, dict[str, object]] = {}
        for node, relative in NODE_CONFS.items():
            confs = json.loads((self.root / relative).read_text())
            confs["ota"]["trusted_public_keys"].append(public_key_text(self.key))
            path = self.work / Path(relative).name
            path.write_text(json.dumps(confs, indent=2))
            mount = {"type": "bind", "source": str(path), "target": "/app/confs.json", "read_only": True}
            for service in ([node, "dashboard-web", "dashboard-ingest"] if node == "edge-node-1" else [node]):
                services[service] = {"volumes": [mount]}
        self.override.write_text(json.dumps({"services": services}, indent=2))
        ports: list[int] = []
        for _ in PORT_VARIABLES:
            ports.append(free_port(set(ports)))
        self.ports = dict(zip(PORT_VARIABLES, ports))
        self.env.update({name: str(port) for name, port in self.ports.items()})

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run docker-compose on the project."""
        return run(["docker-compose", "-p", PROJECT, "--project-directory", str(self.root),
                    "-f", str(self.root / "docker-compose.yml"), "-f", str(self.override), *args],
                   timeout=timeout, env=self.env, check=check)

    def prepare(self, tokens: dict[str, str] | None = None) -> None:
        """docker/prepare.py: broker config, accounts and env files (with the nodes' tokens once known)."""
        args = [f"--device-token={node}={token}" for node, token in (tokens or {}).items()]
        run([sys.executable, str(self.root / "docker" / "prepare.py"), *args], timeout=120)

    def container(self, service: str) -> str:
        """The container id of a service."""
        found = self.compose("ps", "-q", service).stdout.split()
        if not found:
            raise EngineError(f"no container for {service}")
        return found[0]

    def state(self, service: str) -> str:
        """health status if the container has a healthcheck, else its state (running, exited ...)."""
        fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
        return run(["docker", "inspect", "--format", fmt, self.container(service)], env=self.env).stdout.strip()

    def wait_healthy(self, services: tuple[str, ...], timeout_s: float = 300) -> None:
        """Wait until every service is healthy (or running, without a healthcheck)."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = {service: self.state(service) for service in services}
            if all(state in ("healthy", "running") for state in states.values()):
                return
            if time.monotonic() > deadline or any(state in ("exited", "dead", "unhealthy") for state in states.values()):
                logs = self.compose("logs", "--tail", "40", *services, check=False).stdout
                raise EngineError(f"services not healthy: {states}\n{logs[-6000:]}")
            time.sleep(2)

    def flask(self, *args: str) -> str:
        """Run `flask --app dashboard ...` in the dashboard-web container; its output."""
        return self.compose("exec", "-T", "dashboard-web", "flask", "--app", "dashboard", *args, timeout=120).stdout

    def provision(self) -> tuple[str, str, dict[str, str]]:
        """(admin password, admin API token, node tokens): the admin user and each node's dashboard record."""
        created = PASSWORD.search(self.flask("create-admin", "admin"))
        if created is None:
            raise EngineError("create-admin printed no password")
        api_token = self.flask("create-token", "admin", "--name", "test-deploy").strip().splitlines()[-1]
        tokens = {}
        for node in NODES:
            found = TOKEN.search(self.flask("add-device", node))
            if found is None:
                raise EngineError(f"add-device {node} printed no token")
            tokens[node] = found.group(1)
        return created.group(1), api_token, tokens

    def down(self) -> None:
        """Remove the project's containers, networks and volumes (the images stay for the next run)."""
        self.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
