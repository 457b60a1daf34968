"""Production Mosquitto configuration: rendering, accounts, ACL and TLS material."""

from broker_config.manage import (
    DEFAULT_OUT,
    BrokerSettings,
    GeneratedPaths,
    add_dashboard,
    add_device,
    add_devices,
    read_credentials,
    reload_broker,
    render,
)
from broker_config.registry import InvalidName, check_name, render_acl

__all__ = [
    "DEFAULT_OUT",
    "BrokerSettings",
    "GeneratedPaths",
    "InvalidName",
    "add_dashboard",
    "add_device",
    "add_devices",
    "check_name",
    "read_credentials",
    "reload_broker",
    "render",
    "render_acl",
]
