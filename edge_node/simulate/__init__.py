"""Fleet simulator: many virtual edge nodes in one process for load and rollout tests."""

from edge_node.simulate.fleet import Fleet, FleetError, FleetSettings, NodeStats, fleet_device_ids
from edge_node.simulate.virtual_node import VirtualNode

__all__ = ["Fleet", "FleetError", "FleetSettings", "NodeStats", "VirtualNode", "fleet_device_ids"]
