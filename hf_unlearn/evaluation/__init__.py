"""Metrics that compare an unlearned model with a model retrained without the forget set."""

from .predict import MissingLabelsError, accuracy, collect_outputs

__all__ = ["MissingLabelsError", "accuracy", "collect_outputs"]
