"""Modules of the xfer benchmark harness; bench/bench.py is the entry point (see bench/README.md)."""
