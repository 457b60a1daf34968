"""Over-the-air model updates that never leave a node without a self-tested model."""

from edge_node.ota.agent import OtaAgent
from edge_node.ota.download import DownloadError, DownloadStats, PackageDownloader
from edge_node.ota.journal import CommandJournal

__all__ = ["CommandJournal", "DownloadError", "DownloadStats", "OtaAgent", "PackageDownloader"]
