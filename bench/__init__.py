"""Benchmarks that print side-by-side ratios (never timed assertions in tests). See docs/benchmarks.md."""
