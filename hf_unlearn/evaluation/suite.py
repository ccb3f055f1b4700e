"""The whole §5 evaluation of one unlearned model in one call, plus Avg. Gap and speed-up.

Each dataset goes through the model exactly once; every metric is then computed from those
outputs. The reference (retrained) model, when given, goes through the forget set once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .distance import activation_distance_from_logits, check_same_label_space, js_divergence_from_logits
from .metrics import (
    accuracy_from_outputs,
    kept_class_outputs,
    loss_threshold_auc,
    mia_efficacy_from_outputs,
    unlearning_accuracy_from_outputs,
)
from .predict import collect_outputs

GAP_KEYS = ("UA", "RA", "TA", "MIA")
ALL_CLASSES_TA = "TA_all_classes"  # beside "TA" when TA was measured on the kept classes (class removal)
KEPT_CLASSES_TA_LABEL = "TA (kept classes)"


def ta_on_kept_classes(results: Mapping[str, Mapping[str, float]]) -> bool:
    """Whether the TA of these results is test accuracy on the kept classes (``evaluate_unlearning`` was given the
    forgotten classes, and recorded the all-class accuracy as ``TA_all_classes`` beside it).

    Rows measured one way and the other do not compare (a removed class costs every all-class TA its share of the
    test set): that is an error, not a table.
    """
    measured = [name for name, row in results.items() if "TA" in row]
    kept = [name for name in measured if ALL_CLASSES_TA in results[name]]
    if kept and len(kept) != len(measured):
        raise ValueError(f"TA of {kept} is on the kept classes, of {sorted(set(measured) - set(kept))} on all "
                         "classes: evaluate every model with the same forgotten_classes.")
    return bool(kept)


def ta_label(results: Mapping[str, Mapping[str, float]]) -> str:
    """How a table names TA: "TA (kept classes)" after a class removal measured so, else "TA"."""
    return KEPT_CLASSES_TA_LABEL if ta_on_kept_classes(results) else "TA"


def _mia_is_extrapolation(retain_out, test_out, forget_out) -> bool:
    """True when the attacker would only ever see one class and is asked about another.

    Removing one class of a binary task leaves members and non-members of the kept class only; the
    forget examples' features then lie outside everything the attacker was fit on, and its call on
    them is an extrapolation of an arbitrary decision boundary (on SMS spam, two references
    fine-tuned the same way scored 0 and 100). MIA-efficacy is reported as NaN there, not as a number.
    """
    seen = set(torch.as_tensor(retain_out["labels"]).tolist()) | set(torch.as_tensor(test_out["labels"]).tolist())
    asked = set(torch.as_tensor(forget_out["labels"]).tolist())
    return len(seen) < 2 and not (asked & seen)


def _subsample(dataset, n: int | None, seed: int):
    """``n`` examples of ``dataset`` drawn without replacement with ``seed`` (all if ``n`` is None)."""
    if n is None or n >= len(dataset):
        return dataset
    if n <= 0:
        raise ValueError(f"retain_eval_samples must be positive, got {n}.")
    indices = np.sort(np.random.default_rng(seed).choice(len(dataset), n, replace=False)).tolist()
    if hasattr(dataset, "select"):
        return dataset.select(indices)
    return torch.utils.data.Subset(dataset, indices)


def evaluate_unlearning(
    model: nn.Module,
    forget,
    retain,
    test,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    reference_model: nn.Module | None = None,
    retain_eval_samples: int | None = None,
    seed: int = 0,
    mia_feature: str = "confidence",
    attacker: str = "svc",
    mia_draws: int = 1,
    run_time: float | None = None,
    forgotten_classes: Sequence[int] | None = None,
) -> dict[str, float]:
    """UA, RA, TA, MIA-efficacy and loss-threshold AUC of ``model``; distances to a reference.

    Returns a flat dict of floats:

    * ``"UA"``, ``"RA"``, ``"TA"`` — percent; RA is measured on ``retain_eval_samples`` random
      retain examples when given (retain sets can be 50× the test set; the estimate needs far less);
      with ``forgotten_classes`` (class removal) TA is measured on the test examples of the other classes, and
      the all-class accuracy is kept as ``"TA_all_classes"``: the removed classes' test examples are wrong for
      the retrained model too, and counting them reads as damage that did not happen;
    * ``"MIA"`` — SalUn's MIA-efficacy in percent (attacker trained on those retain outputs vs the
      test outputs, balanced; ``mia_feature``/``attacker`` as in
      :func:`~hf_unlearn.evaluation.metrics.mia_efficacy_from_features`); NaN when the retain and
      test sets hold a single class that the forget set does not (class removal on a binary task):
      the attacker has then seen nothing like the forget examples and its verdict is arbitrary;
      ``mia_draws`` > 1 averages it over that many balanced draws (seeds ``seed`` … ``seed + mia_draws −
      1``): on a model whose train and test confidences both saturate, one draw decides the verdict on
      the whole forget set (SMS spam, one fixed model: 1.8 to 100 % across ten draws; docs/evaluation.md);
    * ``"loss_AUC"`` — loss-threshold attack AUC on forget vs test, in [0, 1];
    * ``"JS"``, ``"act_dist"`` — with ``reference_model`` (normally the retrained model): mean
      Jensen–Shannon divergence and activation distance of the outputs on the forget set;
    * ``"time"`` — ``run_time`` in seconds, passed through when given, so the report can show the
      speed-up over retraining.
    """
    if mia_draws < 1:
        raise ValueError(f"mia_draws must be at least 1, got {mia_draws}.")
    if reference_model is not None:
        check_same_label_space(model, reference_model)
    kwargs = dict(collate_fn=collate_fn, batch_size=batch_size, device=device)
    forget_out = collect_outputs(model, forget, **kwargs)
    retain_out = collect_outputs(model, _subsample(retain, retain_eval_samples, seed), **kwargs)
    test_out = collect_outputs(model, test, **kwargs)
    mia = float("nan")
    if not _mia_is_extrapolation(retain_out, test_out, forget_out):
        draws = [
            mia_efficacy_from_outputs(retain_out, test_out, forget_out, feature=mia_feature, attacker=attacker, seed=s)
            for s in range(seed, seed + mia_draws)
        ]
        mia = float(np.mean(draws))
    result = {
        "UA": unlearning_accuracy_from_outputs(forget_out),
        "RA": accuracy_from_outputs(retain_out),
        "TA": accuracy_from_outputs(test_out),
        "MIA": mia,
        "loss_AUC": loss_threshold_auc(forget_out, test_out),
    }
    if forgotten_classes:
        result[ALL_CLASSES_TA] = result["TA"]
        result["TA"] = accuracy_from_outputs(kept_class_outputs(test_out, forgotten_classes))
    if reference_model is not None:
        ref_out = collect_outputs(reference_model, forget, **kwargs)
        result["JS"] = js_divergence_from_logits(forget_out["logits"], ref_out["logits"])
        result["act_dist"] = activation_distance_from_logits(forget_out["logits"], ref_out["logits"])
    if run_time is not None:
        result["time"] = float(run_time)
    return result


def avg_gap(
    result: Mapping[str, float], retrain_result: Mapping[str, float], keys: Sequence[str] = GAP_KEYS
) -> float:
    """Avg. Gap (SalUn): mean of ``|result[k] − retrain_result[k]|`` over ``keys``.

    Lower is better: 0 means indistinguishable from retraining on these metrics. Forgetting *more*
    than retraining (UA above the retrained UA) counts against a method just like forgetting less.
    A metric that is NaN in both results (MIA-efficacy where it is undefined, see
    :func:`evaluate_unlearning`) is left out of the mean; NaN in only one of them is an error.
    """
    if not keys:
        raise ValueError("avg_gap needs at least one metric key.")
    missing = [k for k in keys if k not in result or k not in retrain_result]
    if missing:
        raise KeyError(f"avg_gap: metrics {missing} are missing from one of the two results.")
    pairs = [(float(result[k]), float(retrain_result[k])) for k in keys]
    one_sided = [k for k, (a, b) in zip(keys, pairs) if np.isnan(a) != np.isnan(b)]
    if one_sided:
        raise ValueError(f"avg_gap: {one_sided} is NaN in only one of the two results; they were not measured alike.")
    defined = [abs(a - b) for a, b in pairs if not np.isnan(a)]
    if not defined:
        raise ValueError(f"avg_gap: every metric of {list(keys)} is NaN in both results.")
    return float(np.mean(defined))


def speedup(retrain_seconds: float, seconds: float) -> float:
    """How many times faster than retraining: ``retrain_seconds / seconds``."""
    if seconds <= 0 or retrain_seconds <= 0:
        raise ValueError(f"Run times must be positive, got retrain {retrain_seconds} s and {seconds} s.")
    return float(retrain_seconds) / float(seconds)
