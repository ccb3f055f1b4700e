"""The model card's YAML header as ``huggingface_hub.ModelCardData``: the Hub's own schema, checked by its class.

Only Hub ids are published as ``base_model`` / ``datasets`` (a local folder name would be a broken link and can
leak a private path), and ``model-index`` holds only the metrics this run measured: a metric that was not
evaluated, or is undefined (NaN), is absent rather than zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..evaluation.suite import avg_gap, ta_on_kept_classes
from .data import UnlearningCardData

COMPARISON_KEYS = ("UA", "RA", "TA", "MIA")
METRIC_NAMES = {
    "UA": "Unlearning accuracy (100 - forget accuracy)",
    "RA": "Retain accuracy",
    "TA": "Test accuracy",
    "MIA": "MIA-efficacy",
}
KEPT_CLASSES_TA = ("ta_kept_classes", "Test accuracy on the kept classes")  # class removal: TA without them
TASK = {"task_type": "machine-unlearning", "task_name": "Machine unlearning"}
DATASET = {"dataset_type": "custom", "dataset_name": "forget / retain / test splits of the training data"}


def hub_id(name: str) -> str | None:
    """``name`` when it is a Hub repository id (``owner/name``, not a folder on this machine), else None."""
    text = str(name or "")
    if "/" not in text or Path(text).expanduser().exists():
        return None
    try:
        validate_repo_id(text)
    except HFValidationError:
        return None
    return text


def _hub_ids(names: Iterable[str]) -> list[str]:
    return [name for name in map(hub_id, names) if name is not None]


def _defined(metrics: Mapping[str, float], key: str) -> bool:
    return key in metrics and not math.isnan(float(metrics[key]))


def eval_results(data: UnlearningCardData) -> list[EvalResult]:
    """The unlearned model's measured row of the comparison, one ``EvalResult`` per defined metric, plus its Avg.
    Gap when the retrained reference and this row hold every gap metric. TA on the kept classes (class removal)
    is published as ``ta_kept_classes``, never as plain test accuracy."""
    comparison = data.comparison or {}
    metrics = comparison.get(data.method) or {}
    rows = [(key.lower(), METRIC_NAMES[key], metrics[key]) for key in METRIC_NAMES if _defined(metrics, key)]
    if ta_on_kept_classes(comparison):  # a different metric from all-class TA: named and typed apart on the Hub
        rows = [(*KEPT_CLASSES_TA, value) if kind == "ta" else (kind, name, value) for kind, name, value in rows]
    reference = comparison.get("retrain")
    if reference and all(k in reference and k in metrics for k in COMPARISON_KEYS):
        rows.append(("avg_gap", "Avg. Gap to the retrained model", avg_gap(metrics, reference, COMPARISON_KEYS)))
    return [
        EvalResult(**TASK, **DATASET, metric_type=kind, metric_name=name, metric_value=round(float(value), 2))
        for kind, name, value in rows
    ]


def card_metadata(data: UnlearningCardData) -> ModelCardData:
    """The card's metadata: library, tags, Hub base model and datasets, and the measured results."""
    base = data.merged_adapter_base or data.base_model
    datasets = _hub_ids(data.datasets)
    return ModelCardData(
        library_name="peft" if data.adapter else "transformers",
        tags=sorted({"hf_unlearn", "machine-unlearning", data.method, *data.tags}),
        base_model=hub_id(base),
        datasets=datasets or None,
        model_name=data.model_name,
        eval_results=eval_results(data) or None,
    )
