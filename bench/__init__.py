"""The benchmarks: run them as modules from the repository root (python -m bench.run); see bench/README.md."""
