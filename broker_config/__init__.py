"""Production Mosquitto configuration: rendering, accounts, ACL, bridges and TLS material."""

from broker_config.bridge import BridgeLink, add_bridge, render_bridge_conf, write_bridge
from broker_config.dashboards import add_dashboard
from broker_config.manage import (
    DEFAULT_OUT,
    BrokerSettings,
    GeneratedPaths,
    add_device,
    add_devices,
    read_credentials,
    reload_broker,
    render,
)
from broker_config.registry import InvalidName, check_name, render_acl

__all__ = [
    "DEFAULT_OUT",
    "BridgeLink",
    "BrokerSettings",
    "GeneratedPaths",
    "InvalidName",
    "add_bridge",
    "add_dashboard",
    "add_device",
    "add_devices",
    "check_name",
    "read_credentials",
    "reload_broker",
    "render",
    "render_acl",
    "render_bridge_conf",
    "write_bridge",
]
