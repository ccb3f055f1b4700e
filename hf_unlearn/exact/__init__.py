"""Exact unlearning: retraining from scratch without the forget set (the gold standard)."""

from .retrain import TrainingRecipe, retrain_from_scratch, train_classifier

__all__ = ["TrainingRecipe", "retrain_from_scratch", "train_classifier"]
