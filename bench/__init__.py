"""virtstack benchmarks: scripts (not tests) behind `make bench`; see "Benchmarks" in README.md."""
