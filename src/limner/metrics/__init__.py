"""Metrics that judge generated images."""

from limner.metrics.shapes import shapes_accuracy

__all__ = ["shapes_accuracy"]
