"""Many sites on one machine: a central broker and one building broker per zone, bridged over TLS.

    sites = bridged_sites(broker_factory, {"BuildingA": ("devA",), "BuildingB": ("devB",)}, via_proxy=True)
    sites.central            # the broker the dashboard ingests from (no device accounts)
    sites.buildings["BuildingA"].client("devA")    # nodes log in to their building's broker
    sites.proxies["BuildingA"].cut()               # the building's link to the centre goes down

Each building's bridge logs in to the central with its own account (`bridge-<zone>`) and reaches
the central TLS listener directly or through a `TcpProxy`. `close()` stops the proxies; the
brokers belong to the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker_harness import DEFAULT_LOCATION, BrokerHandle, DeviceInfo
from faults.tcp_proxy import TcpProxy
from support.waiting import wait_until

from broker_config import BridgeLink, add_bridge, write_bridge


@dataclass
class Sites:
    """The central broker, the building brokers by zone, and the proxies between them."""

    central: BrokerHandle
    buildings: dict[str, BrokerHandle]
    proxies: dict[str, TcpProxy] = field(default_factory=dict)

    def building_of(self, device_id: str) -> BrokerHandle:
        """The building broker a device logs in to."""
        return next(b for b in self.buildings.values() if device_id in b.devices)

    def bridge_up(self, zone: str) -> bool:
        """True once the central broker logged the building's bridge connecting since it last started."""
        log = self.central.log_text()
        return log.rfind(f"as bridge-{zone} ") > log.rfind("mosquitto version")

    def close(self) -> None:
        """Stop every proxy."""
        for proxy in self.proxies.values():
            proxy.stop()


def bridged_sites(
    factory: Callable[..., BrokerHandle],
    zones: dict[str, tuple[str, ...]],
    via_proxy: bool = False,
    location: str = DEFAULT_LOCATION,
    central_settings: dict[str, Any] | None = None,
) -> Sites:
    """Start the central broker, then one bridged building broker per zone with its devices."""
    central = factory(devices=(), location=location, settings=central_settings)
    sites = Sites(central, {})
    for zone, devices in zones.items():
        password = add_bridge(central.root, f"bridge-{zone}", location, (zone,))
        central.credentials[f"bridge-{zone}"] = password
        building = factory(devices=devices, location=location, zone=zone, start=False)
        port = central.tls_port
        if via_proxy:
            sites.proxies[zone] = TcpProxy(central.host, central.tls_port).start()
            port = sites.proxies[zone].port
        link = BridgeLink("central", f"{central.host}:{port}", location, (zone,), f"bridge-{zone}", password,
                          central.ca_path)
        write_bridge(building.root, link)
        sites.buildings[zone] = building
        # The central's handle knows the devices too, so topics and Status watches work from the centre.
        central.devices.update({d: DeviceInfo(d, location, zone, building.credentials[d]) for d in devices})
    central.reload()
    for zone, building in sites.buildings.items():
        building.start()
        wait_until(lambda zone=zone: sites.bridge_up(zone), 15, f"the bridge of {zone}", central.log_text)
    return sites
