"""Ingest: its own process that stores what nodes publish and runs the rollout engine."""
