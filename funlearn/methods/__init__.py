"""Unlearning methods: pure objectives plus gradient transformations, and named presets."""

from funlearn.methods.base import Batch, Method, Metrics, Objective, gradient_method

__all__ = ["Batch", "Method", "Metrics", "Objective", "gradient_method"]
