"""Exact unlearning: retraining from scratch without the forget set (the gold standard), and SISA."""

from .retrain import TrainingRecipe, retrain_from_scratch, train_classifier
from .sisa import SISAEnsemble

__all__ = ["SISAEnsemble", "TrainingRecipe", "retrain_from_scratch", "train_classifier"]
