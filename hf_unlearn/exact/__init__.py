"""Exact unlearning: retraining from scratch without the forget set (the gold standard), and SISA."""

from .causal_lm import fine_tune_causal_lm
from .retrain import TrainingRecipe, retrain_from_scratch, train_classifier
from .sisa import SISAEnsemble

__all__ = ["SISAEnsemble", "TrainingRecipe", "fine_tune_causal_lm", "retrain_from_scratch", "train_classifier"]
