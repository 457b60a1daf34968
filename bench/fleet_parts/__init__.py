"""Parts of bench/fleet.py (a folder, so that `make bench` runs only the benchmarks themselves)."""
