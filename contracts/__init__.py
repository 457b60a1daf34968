"""Shared wire and file formats: MQTT topics and payloads, model packages, and confs.json."""

SOFTWARE_VERSION = "0.1.0"
