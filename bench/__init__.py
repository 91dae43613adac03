"""cin benchmarks: `python -m bench --help`."""
