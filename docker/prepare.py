"""Prepare a host for `docker compose up`: broker config with container paths, accounts, git-ignored env files.

Run from the repository root: `python docker/prepare.py [--device-token edge-node-1=TOKEN ...]`.
Safe to re-run: existing accounts, keys and env values are kept.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script from a checkout: the repository's packages need not be installed.
sys.path.insert(0, str(ROOT))

from broker_config import BrokerSettings, GeneratedPaths, add_dashboard, add_device, read_credentials, render  # noqa: E402
from broker_config.registry import load_registry  # noqa: E402
from contracts.confs import Confs, ConfsError, load_confs  # noqa: E402

BROKER_DIR = Path("var/docker/broker")
CONTAINER_CONF_DIR = "/mosquitto/config"
# Plain listener for the healthcheck only: bound to the container's loopback, never published.
PLAIN_PORT = 1883
NODE_CONFS = {"edge-node-1": "docker/confs.json", "edge-node-2": "docker/confs.edge-node-2.json"}
GENERATED_DIRS = ("runs", "keys")
# Compose interpolates `$` inside env files, so tokens are limited to URL-safe characters.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]{8,512}")


def broker_settings(confs: Confs) -> BrokerSettings:
    """Broker settings for the compose network: TLS on all interfaces under the service's host name."""
    hosts = tuple(dict.fromkeys((confs.mqtt.host, "localhost", "127.0.0.1")))
    return BrokerSettings(plain_bind="127.0.0.1", tls_bind="", run_as="mosquitto", log_dest="stderr", hosts=hosts)


def write_env(path: Path, updates: dict[str, str]) -> None:
    """Set keys in an env file (mode 600), keeping other lines and values already set unless updated."""
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.partition("=")[0].strip() not in updates]
    body = "\n".join(kept + [f"{key}={value}" for key, value in updates.items()]) + "\n"
    # Still ends in .env, so .gitignore covers it if a crash leaves it behind.
    partial = path.with_name(f".{path.stem}.partial.env")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    partial.replace(path)


def read_env(path: Path) -> dict[str, str]:
    """KEY=value pairs of an env file; empty if it does not exist."""
    if not path.exists():
        return {}
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line and line[:1] != "#")
    return {key.strip(): value for key, _, value in pairs}


def parse_tokens(values: list[str]) -> dict[str, str]:
    """`ID=TOKEN` arguments as a dict; raises ValueError on anything else."""
    tokens = {}
    for value in values:
        device_id, sep, token = value.partition("=")
        if not sep or device_id not in NODE_CONFS or not TOKEN_PATTERN.fullmatch(token):
            raise ValueError(f"invalid --device-token {device_id!r}: expected ID=TOKEN, ID one of {sorted(NODE_CONFS)}, TOKEN of 8+ URL-safe characters")
        tokens[device_id] = token
    return tokens


def prepare(root: Path, tokens: dict[str, str]) -> list[Path]:
    """Render the broker, make the accounts and write the env files; returns the env files."""
    node_confs = {device: load_confs(root / path) for device, path in NODE_CONFS.items()}
    for device, confs in node_confs.items():
        if confs.edge_node.device_id != device:
            raise ValueError(f"{NODE_CONFS[device]}: edge_node.device_id is not {device!r}")
    confs = node_confs["edge-node-1"]
    out = root / BROKER_DIR
    render(out, PLAIN_PORT, confs.mqtt.port, broker_settings(confs), CONTAINER_CONF_DIR)
    registry = load_registry(GeneratedPaths(out).registry)
    for device in node_confs:
        if device not in registry.devices:
            add_device(out, device, confs.identity.location, confs.identity.zone)
    if confs.dashboard.app_id not in registry.dashboards:
        add_dashboard(out, confs.dashboard.app_id)
    passwords = read_credentials(out)
    env_dir = root / "docker"
    dashboard_env = env_dir / "dashboard.env"
    secret_key = read_env(dashboard_env).get("SECRET_KEY") or secrets.token_hex(32)
    write_env(dashboard_env, {"MQTT_PASSWORD": passwords[confs.dashboard.app_id], "SECRET_KEY": secret_key})
    written = [dashboard_env]
    for device in node_confs:
        env = env_dir / f"{device}.env"
        token = tokens.get(device) or read_env(env).get("EDGE_TOKEN", "")
        write_env(env, {"MQTT_PASSWORD": passwords[device], "EDGE_TOKEN": token})
        written.append(env)
    for name in GENERATED_DIRS:
        (root / name).mkdir(exist_ok=True)
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, prepare, and say what comes next; errors are one line and exit 1."""
    parser = argparse.ArgumentParser(prog="python docker/prepare.py", description=__doc__.splitlines()[0])
    parser.add_argument("--device-token", action="append", default=[], metavar="ID=TOKEN",
                        help="a node's dashboard token (from `flask --app dashboard add-device`); repeat per node")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        written = prepare(args.root, parse_tokens(args.device_token))
    except (ConfsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"broker config in {BROKER_DIR}; env files (mode 600, git-ignored): {', '.join(p.name for p in written)}")
    missing = [p.stem for p in written[1:] if not read_env(p).get("EDGE_TOKEN")]
    if missing:
        print(f"nodes without a dashboard token yet: {', '.join(missing)} (see docker/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
