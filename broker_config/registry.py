"""The device registry (JSON) and the Mosquitto ACL generated from it."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NODE_CHANNELS = ("Status", "Life", "Sensors", "Warnings", "Updates")
COMMANDS = "Commands"
MAX_INGEST_WORKERS = 256


class InvalidName(ValueError):
    """A device id, location, zone or account name outside `[A-Za-z0-9_.-]{1,64}`."""


def check_name(value: str, what: str) -> str:
    """Return value if it is a safe topic segment and username, else raise InvalidName."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidName(f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . -")
    return value


@dataclass(frozen=True)
class Device:
    """Where one edge node sits in the topic tree."""

    location: str
    zone: str


@dataclass(frozen=True)
class Dashboard:
    """A dashboard account: its application id, any locations beyond the devices', and its ingest worker accounts."""

    app: str
    locations: tuple[str, ...] = ()
    ingest_workers: int = 1

    def accounts(self, username: str) -> list[str]:
        """The account itself, then one per extra ingest worker (`USER.ingest-2` ...)."""
        return [username] + [worker_account(username, n) for n in range(2, self.ingest_workers + 1)]


def worker_account(username: str, worker: int) -> str:
    """Ingest worker `worker`'s account name (the same rule as contracts.topics.ingest_account)."""
    # Client ids are bound to accounts, so workers side by side each log in as an account of their own;
    # they share the dashboard's password and ACL.
    return check_name(f"{username}.ingest-{worker}", "ingest worker username")


@dataclass(frozen=True)
class Bridge:
    """A building broker's bridge account on the central broker: the zones of one location it carries."""

    location: str
    zones: tuple[str, ...]


@dataclass
class Registry:
    """Every account the broker knows, keyed by username."""

    devices: dict[str, Device] = field(default_factory=dict)
    dashboards: dict[str, Dashboard] = field(default_factory=dict)
    bridges: dict[str, Bridge] = field(default_factory=dict)

    def locations(self) -> list[str]:
        """All locations that have at least one device, here or behind a bridge."""
        return sorted({d.location for d in self.devices.values()} | {b.location for b in self.bridges.values()})

    def check_unique(self, username: str, kind: str, owner: str | None = None) -> None:
        """Refuse a username already used by an account of another kind (or another dashboard's worker)."""
        kinds = {"device": self.devices, "dashboard": self.dashboards, "bridge": self.bridges}
        if any(username in accounts for other, accounts in kinds.items() if other != kind):
            raise InvalidName(f"username {username!r} is already used by another account")
        for user, dashboard in self.dashboards.items():
            if user != owner and username in dashboard.accounts(user)[1:]:
                raise InvalidName(f"username {username!r} is already an ingest worker account of dashboard {user!r}")


def load_registry(path: Path) -> Registry:
    """Load the registry, or an empty one if the file does not exist."""
    if not path.exists():
        return Registry()
    raw = json.loads(path.read_text())
    devices = {
        check_name(dev_id, "device id"): Device(check_name(d["location"], "location"), check_name(d["zone"], "zone"))
        for dev_id, d in raw.get("devices", {}).items()
    }
    dashboards = {
        check_name(user, "dashboard username"): Dashboard(
            check_name(d["app"], "application id"),
            tuple(check_name(loc, "location") for loc in d.get("locations", [])),
            _worker_count(d.get("ingest_workers", 1)),
        )
        for user, d in raw.get("dashboards", {}).items()
    }
    bridges = {
        check_name(user, "bridge username"): Bridge(
            check_name(b["location"], "location"), tuple(check_name(zone, "zone") for zone in b["zones"])
        )
        for user, b in raw.get("bridges", {}).items()
    }
    return Registry(devices, dashboards, bridges)


def _worker_count(value: object) -> int:
    """A dashboard's ingest worker account count, checked."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_INGEST_WORKERS:
        raise InvalidName(f"invalid ingest worker count {value!r}: must be 1-{MAX_INGEST_WORKERS}")
    return value


def save_registry(path: Path, registry: Registry) -> None:
    """Write the registry as indented JSON."""
    raw = {
        "devices": {k: asdict(v) for k, v in sorted(registry.devices.items())},
        "dashboards": {
            k: {"app": v.app, "locations": list(v.locations), "ingest_workers": v.ingest_workers}
            for k, v in sorted(registry.dashboards.items())
        },
    }
    if registry.bridges:
        raw["bridges"] = {k: {"location": v.location, "zones": list(v.zones)} for k, v in sorted(registry.bridges.items())}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(path)


def device_acl(device_id: str, device: Device) -> list[str]:
    """ACL lines for one device: write its own node channels, read its own Commands."""
    root = f"{device.location}/Devices/{device.zone}/{device_id}"
    lines = [f"user {device_id}"]
    lines += [f"topic write {root}/{channel}" for channel in NODE_CHANNELS]
    lines.append(f"topic read {root}/{COMMANDS}")
    return lines


def dashboard_acl(username: str, dashboard: Dashboard, locations: list[str]) -> list[str]:
    """ACL lines for a dashboard: read all device channels, write only Commands, own app Status."""
    lines = [f"user {username}"]
    for location in sorted(set(locations) | set(dashboard.locations)):
        lines.append(f"topic read {location}/Devices/+/+/#")
        lines.append(f"topic write {location}/Devices/+/+/{COMMANDS}")
        lines.append(f"topic readwrite {location}/Applications/{dashboard.app}/Status")
    return lines


def bridge_acl(username: str, bridge: Bridge) -> list[str]:
    """ACL lines for a bridge: carry its zones' node channels up and their Commands down, nothing else."""
    lines = [f"user {username}"]
    for zone in bridge.zones:
        root = f"{bridge.location}/Devices/{zone}/+"
        lines += [f"topic write {root}/{channel}" for channel in NODE_CHANNELS]
        lines.append(f"topic read {root}/{COMMANDS}")
    return lines


def render_acl(registry: Registry) -> str:
    """The whole ACL file; no global lines, so nothing (not even `$SYS`) is granted by default."""
    blocks = ["# Generated by broker_config from registry.json: edit the registry, not this file."]
    for username, dashboard in sorted(registry.dashboards.items()):
        blocks += ["\n".join(dashboard_acl(account, dashboard, registry.locations())) for account in dashboard.accounts(username)]
    for username, bridge in sorted(registry.bridges.items()):
        blocks.append("\n".join(bridge_acl(username, bridge)))
    for device_id, device in sorted(registry.devices.items()):
        blocks.append("\n".join(device_acl(device_id, device)))
    return "\n\n".join(blocks) + "\n"


def write_acl(path: Path, registry: Registry) -> None:
    """Render and atomically write the ACL file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_acl(registry))
    tmp.chmod(0o640)
    tmp.replace(path)
    logger.info("ACL written to %s (%d devices)", path, len(registry.devices))
