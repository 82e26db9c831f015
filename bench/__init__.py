"""Benchmarks: `python -m bench` (or `make bench`). Each module measures one thing and returns figures."""
