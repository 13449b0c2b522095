"""virtstack benchmarks: scripts (not tests) behind `make bench`; see bench/README.md."""
