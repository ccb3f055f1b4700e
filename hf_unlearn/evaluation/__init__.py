"""Metrics that compare an unlearned model with a model retrained without the forget set."""

from .distance import (
    activation_distance,
    activation_distance_from_logits,
    check_same_label_space,
    feature_distance,
    js_divergence,
    js_divergence_from_logits,
    js_divergence_from_probs,
)
from .metrics import (
    accuracy_from_outputs,
    attack_features,
    kept_class_outputs,
    loss_threshold_auc,
    metric_path,
    mia_efficacy,
    mia_efficacy_from_features,
    mia_efficacy_from_outputs,
    per_example_loss_from_outputs,
    retain_accuracy,
    test_accuracy,
    unlearning_accuracy,
    unlearning_accuracy_from_outputs,
)
from .predict import MissingLabelsError, accuracy, collect_outputs
from .report import per_example_loss, write_report
from .suite import avg_gap, evaluate_unlearning, speedup

__all__ = [
    "MissingLabelsError",
    "accuracy",
    "accuracy_from_outputs",
    "activation_distance",
    "activation_distance_from_logits",
    "attack_features",
    "avg_gap",
    "check_same_label_space",
    "collect_outputs",
    "evaluate_unlearning",
    "feature_distance",
    "js_divergence",
    "js_divergence_from_logits",
    "js_divergence_from_probs",
    "kept_class_outputs",
    "loss_threshold_auc",
    "metric_path",
    "mia_efficacy",
    "mia_efficacy_from_features",
    "mia_efficacy_from_outputs",
    "per_example_loss",
    "per_example_loss_from_outputs",
    "retain_accuracy",
    "speedup",
    "test_accuracy",
    "unlearning_accuracy",
    "unlearning_accuracy_from_outputs",
    "write_report",
]
