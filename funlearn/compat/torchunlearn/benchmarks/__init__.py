"""``torchunlearn.benchmarks``: :mod:`funlearn.compat.evaluation`'s comparison helpers."""

from funlearn.compat.evaluation import BenchmarkSuite, compare, print_table, to_dataframe

__all__ = ["compare", "print_table", "to_dataframe", "BenchmarkSuite"]
