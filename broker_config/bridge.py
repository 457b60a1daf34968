"""Many sites: a building broker bridged over TLS to a central broker, each bridge with its own account and ACL."""

from __future__ import annotations

import grp
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from broker_config.manage import BROKER_GROUP, GeneratedPaths, _refresh_acl, _save_credential
from broker_config.passwords import generate_password
from broker_config.registry import COMMANDS, NODE_CHANNELS, Bridge, InvalidName, check_name, load_registry, save_registry

logger = logging.getLogger(__name__)

# host:port where host is a DNS name or an IPv4 address; written into mosquitto.conf verbatim.
_ADDRESS = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}")
# Mosquitto keeps the password in the conf in plain text, so refuse anything that would end the line.
_CONF_VALUE = re.compile(r"[!-~]{1,256}")


def add_bridge(
    out_dir: Path, username: str, location: str, zones: tuple[str, ...], password: str | None = None
) -> str:
    """Register (or re-key) a building's bridge account on the central broker; returns its password."""
    check_name(username, "bridge username")
    if not zones:
        raise InvalidName("a bridge carries at least one zone")
    bridge = Bridge(check_name(location, "location"), tuple(check_name(zone, "zone") for zone in zones))
    paths = GeneratedPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    registry = load_registry(paths.registry)
    registry.check_unique(username, "bridge")
    registry.bridges[username] = bridge
    password = password or generate_password()
    save_registry(paths.registry, registry)
    _save_credential(paths, username, password)
    _refresh_acl(paths)
    return password


@dataclass(frozen=True)
class BridgeLink:
    """The building side of one bridge: where the central broker is and which topics cross."""

    name: str
    address: str
    location: str
    zones: tuple[str, ...]
    username: str
    password: str
    cafile: Path
    keepalive_s: int = 30
    restart_min_s: int = 1
    restart_max_s: int = 10

    def check(self) -> "BridgeLink":
        """Return self if every value is safe to write into mosquitto.conf, else raise ValueError."""
        check_name(self.name, "bridge name")
        check_name(self.location, "location")
        check_name(self.username, "bridge username")
        if not self.zones:
            raise InvalidName("a bridge carries at least one zone")
        for zone in self.zones:
            check_name(zone, "zone")
        if not _ADDRESS.fullmatch(self.address) or not 1 <= int(self.address.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"invalid central address {self.address!r}: use host:port")
        if not _CONF_VALUE.fullmatch(self.password):
            raise ValueError("invalid bridge password: printable ASCII without spaces, at most 256 characters")
        if not 1 <= self.restart_min_s <= self.restart_max_s:
            raise ValueError("restart times must satisfy 1 <= min <= max")
        return self


def bridge_topics(location: str, zones: tuple[str, ...]) -> list[str]:
    """The bridge's topic lines: every node channel of the zones out, their Commands in, all at QoS 1."""
    lines = []
    for zone in zones:
        root = f"{location}/Devices/{zone}/+"
        lines += [f"topic {root}/{channel} out 1" for channel in NODE_CHANNELS]
        lines.append(f"topic {root}/{COMMANDS} in 1")
    return lines


def render_bridge_conf(link: BridgeLink, cafile: Path) -> str:
    """The bridge section of the building broker's configuration."""
    link.check()
    lines = [
        f"# Bridge {link.name}: rendered by `python -m broker_config bridge`; holds a password, keep it private.",
        f"connection {link.name}",
        f"address {link.address}",
        "bridge_protocol_version mqttv50",
        # The central broker binds client ids to usernames: the bridge's id is its account.
        f"remote_clientid {link.username}",
        f"local_clientid {link.username}.local",
        f"remote_username {link.username}",
        f"remote_password {link.password}",
        f"bridge_cafile {cafile}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        # A persistent session on both ends: QoS 1 messages queued while the link is down cross when it returns.
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {link.restart_min_s} {link.restart_max_s}",
        f"keepalive_interval {link.keepalive_s}",
        # The link's state stays on the building broker; the central ACL gives the bridge no $SYS topic.
        "notifications true",
        "notifications_local_only true",
        *bridge_topics(link.location, link.zones),
    ]
    return "\n".join(lines) + "\n"


def write_bridge(out_dir: Path, link: BridgeLink) -> Path:
    """Copy the central CA in and write conf.d/bridge-NAME.conf (mode 600, 640 for the broker group as root)."""
    link.check()
    paths = GeneratedPaths(Path(out_dir))
    if not paths.conf.exists() or "include_dir" not in paths.conf.read_text():
        raise RuntimeError(f"{paths.conf} does not include {paths.conf_d}: run `python -m broker_config render` first")
    paths.conf_d.mkdir(mode=0o750, exist_ok=True)
    cafile = paths.conf_d / f"bridge-{link.name}-ca.crt"
    shutil.copyfile(link.cafile, cafile)
    target = paths.conf_d / f"bridge-{link.name}.conf"
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render_bridge_conf(link, cafile))
    _broker_readable(tmp, cafile)
    tmp.replace(target)
    logger.info("bridge %s to %s written to %s", link.name, link.address, target)
    return target


def _broker_readable(*files: Path) -> None:
    """As root, let the broker group read the files (the broker rereads its conf after dropping privileges)."""
    if os.geteuid() != 0:
        return
    try:
        gid = grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        return
    for path in files:
        os.chown(path, 0, gid)
        path.chmod(0o640)
