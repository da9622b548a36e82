"""Evaluation: `limner evaluate` computes every metric beside its real-versus-real floor and writes a report."""

from limner.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
