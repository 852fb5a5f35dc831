"""``torchunlearn.metrics``: :class:`funlearn.compat.evaluation.UnlearningEvaluator`."""

from funlearn.compat.evaluation import UnlearningEvaluator

__all__ = ["UnlearningEvaluator"]
