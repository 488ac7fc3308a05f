"""Benchmarks (not tests): each `bench/bench_*.py` measures the kit against a baseline side by side in one
run and reports ratios. Run them all with `make bench` (or `python -m bench [name ...]`)."""
