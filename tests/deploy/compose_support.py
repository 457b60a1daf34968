"""Constants and helpers for the deploy tests: where things are and how to read compose entries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NODE_SERVICES = ("edge-node-1", "edge-node-2")
CONFS_TARGET = "/app/confs.json"


def mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in long form (type, source, target, read_only)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            kind = "bind" if source.startswith((".", "/", "$")) else "volume"
            volume = {"type": kind, "source": source, "target": target, "read_only": mode == ["ro"]}
        found.append(volume)
    return found


def mount_source(service: dict[str, Any], target: str) -> dict[str, Any] | None:
    """The mount of a service at target, if any."""
    return next((m for m in mounts(service) if m["target"] == target), None)


def published(service: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Published ports by container port, from `[HOST_IP:]PUBLISHED:TARGET/PROTOCOL` entries.

    The short syntax, because docker-compose 1.29 (Debian's) refuses `host_ip` in the long one.
    """
    ports = {}
    for port in service.get("ports", []):
        assert isinstance(port, str), f"use `[HOST_IP:]PUBLISHED:TARGET/PROTOCOL`, not {port!r}"
        # Host ports may be `${VARIABLE:-default}`: the default stands for them here.
        address, _, protocol = re.sub(r"\$\{\w+:-(\d+)\}", r"\1", port).partition("/")
        assert protocol == "tcp", f"name the protocol of {port!r}"
        *host_ip, published_port, target = address.split(":")
        ports[int(target)] = {"target": int(target), "published": published_port, "protocol": protocol,
                              "host_ip": host_ip[0] if host_ip else ""}
    return ports
