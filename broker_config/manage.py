"""Render the broker configuration, manage accounts and reload a running broker."""

from __future__ import annotations

import grp
import json
import logging
import os
import re
import signal
import stat
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from broker_config.passwords import generate_password, hash_password, read_passwd, set_password, write_passwd
from broker_config.registry import (
    Device,
    InvalidName,
    check_name,
    load_registry,
    save_registry,
    write_acl,
)
from broker_config.tls import DEFAULT_HOSTS, TlsPaths, ensure_tls

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE = PACKAGE_DIR / "mosquitto.conf.template"
DEFAULT_OUT = PACKAGE_DIR / "generated"
BROKER_GROUP = "mosquitto"
# Substituted into mosquitto.conf verbatim, so spaces, newlines and `#` must not get through.
_CONTAINER_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
# TLS 1.2 suites with ECDHE key exchange and AEAD ciphers only (the CA is ECDSA; RSA ones for an operator's own cert).
TLS12_AEAD_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256",
))


@dataclass(frozen=True)
class GeneratedPaths:
    """Every file the broker configuration consists of, inside one directory."""

    root: Path

    @property
    def conf(self) -> Path:
        """The rendered mosquitto.conf."""
        return self.root / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        """The password file (hashes only)."""
        return self.root / "passwd"

    @property
    def acl(self) -> Path:
        """The ACL file generated from the registry."""
        return self.root / "acl"

    @property
    def registry(self) -> Path:
        """The device and dashboard registry (JSON)."""
        return self.root / "registry.json"

    @property
    def credentials(self) -> Path:
        """Plain-text passwords, mode 600, for provisioning nodes and the dashboard."""
        return self.root / "credentials.json"

    @property
    def tls(self) -> TlsPaths:
        """CA and server certificate files."""
        return TlsPaths.in_dir(self.root / "tls")

    @property
    def data(self) -> Path:
        """Mosquitto's persistence directory."""
        return self.root / "data"

    @property
    def run(self) -> Path:
        """Runtime directory the unprivileged broker may write (pid file)."""
        return self.root / "run"

    @property
    def pid_file(self) -> Path:
        """Where the broker's pid is recorded."""
        return self.run / "mosquitto.pid"

    @property
    def conf_d(self) -> Path:
        """Extra configuration files the broker includes (bridges); may hold secrets."""
        return self.root / "conf.d"

    @property
    def log(self) -> Path:
        """The broker log when logging to a file."""
        return self.root / "mosquitto.log"


@dataclass(frozen=True)
class BrokerSettings:
    """Per-deployment values substituted into the template."""

    plain_port: int = 1883
    tls_port: int = 8883
    plain_bind: str = "127.0.0.1"
    tls_bind: str = ""
    run_as: str = "mosquitto"
    log_dest: str = "stderr"
    hosts: tuple[str, ...] = DEFAULT_HOSTS
    autosave_interval: int = 60
    client_expiration: str = "14d"
    max_packet_size: int = 262144 + 4096
    max_queued_messages: int = 10000
    max_inflight_messages: int = 20
    max_keepalive: int = 300
    # Each account then holds one connection: dashboard processes that run side by side need accounts of their own.
    bind_client_id: bool = True


def check_path_prefix(path_prefix: str) -> str:
    """Return path_prefix if it is an absolute path safe to write into mosquitto.conf, else raise ValueError."""
    if not _CONTAINER_PATH.fullmatch(path_prefix) or ".." in path_prefix.split("/"):
        raise ValueError(f"invalid path prefix {path_prefix!r}: must be an absolute path of [A-Za-z0-9_./-], no '..'")
    return path_prefix


def render_conf(paths: GeneratedPaths, settings: BrokerSettings, path_prefix: str | None = None) -> str:
    """Fill the template with settings and the paths of the generated files (as seen under path_prefix, if given)."""
    if path_prefix is not None:
        paths = GeneratedPaths(Path(check_path_prefix(path_prefix)))
    values = {
        "password_file": paths.passwd,
        "acl_file": paths.acl,
        "pid_file": paths.pid_file,
        "persistence_dir": paths.data,
        "cafile": paths.tls.ca_cert,
        "certfile": paths.tls.server_cert,
        "keyfile": paths.tls.server_key,
        "include_dir": paths.conf_d,
        "log_dest": settings.log_dest,
        "tls12_ciphers": TLS12_AEAD_CIPHERS,
        **{k: v for k, v in vars(settings).items() if k not in ("hosts", "log_dest", "bind_client_id")},
        "bind_client_id": "true" if settings.bind_client_id else "false",
    }
    text = string.Template(TEMPLATE.read_text()).substitute(values)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _check_port(port: int, what: str) -> int:
    """Return port if it is a usable TCP port, else raise ValueError."""
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid {what} {port}: must be 1-65535")
    return port


def _grant_broker_group(paths: GeneratedPaths, settings: BrokerSettings) -> None:
    """Let the unprivileged broker user read its secrets (group-readable, never world-readable)."""
    if os.geteuid() != 0 or settings.run_as == "root":
        return
    try:
        gid = grp.getgrnam(BROKER_GROUP).gr_gid
    except KeyError:
        logger.warning("group %s does not exist: the broker may not read its key files", BROKER_GROUP)
        return
    for path in (paths.tls.server_key, paths.passwd, paths.acl):
        os.chown(path, 0, gid)
        path.chmod(0o640)
    for directory in (paths.data, paths.run):
        os.chown(directory, -1, gid)
        directory.chmod(0o770)
    os.chown(paths.conf_d, -1, gid)


def _keeping_owner(path: Path, write: Callable[[], None]) -> None:
    """Run write (which replaces path) and give the new file the old one's group and mode."""
    old = path.stat() if path.exists() else None
    write()
    if old is not None:
        path.chmod(stat.S_IMODE(old.st_mode))
        if os.geteuid() == 0:
            os.chown(path, -1, old.st_gid)


def _refresh_acl(paths: GeneratedPaths) -> None:
    """Regenerate the ACL from the registry."""
    _keeping_owner(paths.acl, lambda: write_acl(paths.acl, load_registry(paths.registry)))


def render(
    out_dir: Path = DEFAULT_OUT,
    plain_port: int = 1883,
    tls_port: int = 8883,
    settings: BrokerSettings | None = None,
    path_prefix: str | None = None,
) -> GeneratedPaths:
    """Write mosquitto.conf, passwd, acl and TLS material into out_dir, keeping existing accounts and keys.

    With path_prefix the conf names its files under that directory instead of out_dir (a container mount point).
    """
    base = settings or BrokerSettings()
    settings = BrokerSettings(**{**vars(base), "plain_port": plain_port, "tls_port": tls_port})
    _check_port(settings.plain_port, "plain port")
    _check_port(settings.tls_port, "TLS port")
    if settings.plain_port == settings.tls_port:
        raise ValueError("the plain and TLS ports must differ")
    if path_prefix is not None:
        check_path_prefix(path_prefix)
    paths = GeneratedPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o755)
    paths.data.mkdir(exist_ok=True)
    paths.run.mkdir(exist_ok=True)
    paths.conf_d.mkdir(mode=0o750, exist_ok=True)
    ensure_tls(paths.tls.ca_cert.parent, settings.hosts)
    if not paths.passwd.exists():
        paths.passwd.touch(mode=0o600)
    _refresh_acl(paths)
    paths.conf.write_text(render_conf(paths, settings, path_prefix))
    _grant_broker_group(paths, settings)
    logger.info("broker configuration rendered into %s", paths.root)
    return paths


def read_credentials(out_dir: Path = DEFAULT_OUT) -> dict[str, str]:
    """Plain-text passwords by username, as saved when the accounts were made."""
    path = GeneratedPaths(Path(out_dir)).credentials
    return json.loads(path.read_text()) if path.exists() else {}


def _save_credential(paths: GeneratedPaths, username: str, password: str) -> None:
    """Record a password in the mode-600 credentials file and hash it into passwd."""
    creds = read_credentials(paths.root)
    creds[username] = password
    fd = os.open(paths.credentials.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle, indent=2, sort_keys=True)
    paths.credentials.with_suffix(".tmp").replace(paths.credentials)
    _keeping_owner(paths.passwd, lambda: set_password(paths.passwd, username, password))


def add_device(
    out_dir: Path, device_id: str, location: str, zone: str, password: str | None = None, replace: bool = False
) -> str:
    """Register a device, give it a password and regenerate the ACL; returns the password."""
    check_name(device_id, "device id")
    device = Device(check_name(location, "location"), check_name(zone, "zone"))
    paths = GeneratedPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    registry = load_registry(paths.registry)
    registry.check_unique(device_id, "device")
    if device_id in registry.devices and not replace:
        raise InvalidName(f"device {device_id!r} is already registered (use --replace to change it)")
    registry.devices[device_id] = device
    password = password or generate_password()
    save_registry(paths.registry, registry)
    _save_credential(paths, device_id, password)
    _refresh_acl(paths)
    return password


def add_devices(out_dir: Path, devices: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """Register many new devices (id, location, zone) with one write of each file; returns id -> password.

    `add_device` rewrites passwd, credentials and the ACL per device, which is slow for a fleet of hundreds.
    Nothing is written unless every device is valid and new.
    """
    paths = GeneratedPaths(Path(out_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    registry = load_registry(paths.registry)
    passwords: dict[str, str] = {}
    for device_id, location, zone in devices:
        check_name(device_id, "device id")
        device = Device(check_name(location, "location"), check_name(zone, "zone"))
        registry.check_unique(device_id, "device")
        if device_id in registry.devices or device_id in passwords:
            raise InvalidName(f"device {device_id!r} is already registered")
        registry.devices[device_id] = device
        passwords[device_id] = generate_password()
    if not passwords:
        return passwords
    save_registry(paths.registry, registry)
    creds = {**read_credentials(paths.root), **passwords}
    fd = os.open(paths.credentials.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(creds, handle, indent=2, sort_keys=True)
    paths.credentials.with_suffix(".tmp").replace(paths.credentials)
    entries = {**read_passwd(paths.passwd), **{user: hash_password(pw) for user, pw in passwords.items()}}
    _keeping_owner(paths.passwd, lambda: write_passwd(paths.passwd, entries))
    _refresh_acl(paths)
    return passwords


def reload_broker(pid_file: Path) -> int:
    """Send SIGHUP to the broker whose pid is in pid_file so it rereads passwd and ACL; returns the pid."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read a pid from {pid_file}: {exc}") from None
    os.kill(pid, signal.SIGHUP)
    logger.info("sent SIGHUP to broker pid %d", pid)
    return pid
