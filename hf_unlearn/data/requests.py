"""What a request's labels say: whether they fit the model, and whether a whole class is removed."""

from __future__ import annotations

import numpy as np
from torch import nn

from .columns import label_array, label_column


def check_label_range(model: nn.Module, **datasets) -> None:
    """Refuse examples whose labels the model cannot have been trained on (before anything changes), and labels that
    are not class ids: run first, as every later check reads the labels (a csv of "ham"/"spam" otherwise surfaced as
    an overlap or membership error). Sets that are not ``datasets.Dataset`` are left to ``require_dataset``."""
    config = getattr(model, "config", None)
    num_labels = getattr(config, "num_labels", None)
    problem = getattr(config, "problem_type", None)
    if problem in ("regression", "multi_label_classification"):
        raise ValueError(
            f"The model's problem_type is {problem!r}: unlearning here needs one class per example (its stop rules, "
            "guard and metrics read accuracy and the true label's probability), so this model cannot be unlearned "
            "with hf_unlearn."
        )
    for name, dataset in datasets.items():
        if dataset is None or num_labels is None or not hasattr(dataset, "column_names"):
            continue
        labels = label_array(dataset, name)
        if not labels.size:  # an empty set is refused by name below (check_request_inputs)
            continue
        _require_ids(name, labels, label_column(dataset))
        if (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(
                f"The {name} set has labels in [{int(labels.min())}, {int(labels.max())}] but the model has "
                f"{num_labels} labels: these examples cannot come from this model's training data."
            )


def refuse_label_names(name: str, labels: np.ndarray, column: str = "labels") -> None:
    """Labels read from a csv are often the class names: say how to map them, before a collator fails on a string."""
    if labels.dtype.kind in "USO":
        raise ValueError(
            f"The {name} set's labels are names (e.g. {str(labels.flat[0])!r}), not the ids the model predicts. "
            "Map them first: data, names = hf_unlearn.data.label_names.encode_labels(DatasetDict(train=train, "
            f"validation=validation), model.config), or dataset.map(lambda r: {{'{column}': "
            f"model.config.label2id[r['{column}']]}})."
        )


def _require_ids(name: str, labels: np.ndarray, column: str = "labels") -> None:
    if labels.ndim > 1:
        raise ValueError(
            f"The {name} set has a label vector per example (shape {labels.shape}): a multi-label or soft-label "
            "task. Unlearning here needs one class id per example."
        )
    refuse_label_names(name, labels, column)
    if labels.dtype.kind == "f":
        fractions = labels[labels != np.round(labels)]
        if fractions.size:
            raise ValueError(f"The {name} set's labels are not whole numbers (e.g. {fractions.flat[0]}): a "
                             "classifier's labels are class ids.")
        raise ValueError(
            f"The {name} set's labels are floats (e.g. {labels.flat[0]}), not integer class ids: float labels are read "
            "as probabilities, and its rows would not match the training data's integer ones. Cast them first: "
            "dataset.cast_column('labels', datasets.Value('int64'))."
        )


def detect_scenario(requested: str, forget_dataset, retain_dataset) -> str:
    """``class`` when no retained example shares a label with the forget set, else ``samples``."""
    if requested != "auto":
        return requested
    if retain_dataset is None:
        return "samples"
    forget_labels = set(label_array(forget_dataset).tolist())
    retain_labels = set(label_array(retain_dataset).tolist())
    return "class" if not forget_labels & retain_labels else "samples"
