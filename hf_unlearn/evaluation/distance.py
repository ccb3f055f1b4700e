"""How far an unlearned model's outputs are from the retrained model's (docs/evaluation.md).

Accuracy-type metrics compare aggregate numbers; these compare the two models example by example
on the same inputs (normally the forget set), so two models with equal UA but different mistakes
are told apart.

* **Jensen–Shannon divergence** of the softmax outputs, natural log, averaged over examples.
  It is symmetric and bounded by ln 2 ≈ 0.693 (disjoint supports), unlike KL, which explodes when
  one model puts near-zero mass where the other does not.
* **Activation distance** (Chundawat et al., "Can bad teaching induce forgetting?", AAAI 2023; also
  used with SCRUB): the mean over examples of the L2 distance between the two output probability
  vectors, ``mean_i ‖softmax(a_i) − softmax(b_i)‖₂``, bounded by √2. With ``on="features"`` the
  same distance is taken between the last hidden representations fed to the heads — meaningful
  only when both models share an architecture (and then it is unbounded).

Both models must predict over the same label space; a mismatch raises ``ValueError`` before any
number is produced, because a divergence between misaligned classes looks valid and is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..data.label_names import named_labels
from .predict import collect_outputs

LN2 = math.log(2.0)


# ------------------------------------------------------------------------------ label spaces
def check_same_label_space(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ``ValueError`` if the two models' configs declare different label spaces.

    Compares ``config.num_labels`` and, where both configs name their labels (not the default
    ``LABEL_i`` names), ``config.id2label``. Models without a config are checked later, on the
    number of logits.
    """
    config_a, config_b = getattr(model_a, "config", None), getattr(model_b, "config", None)
    if config_a is None or config_b is None:
        return
    num_a, num_b = getattr(config_a, "num_labels", None), getattr(config_b, "num_labels", None)
    if num_a is not None and num_b is not None and num_a != num_b:
        raise ValueError(
            f"The models predict over different label spaces: num_labels {num_a} vs {num_b}. "
            "Compare an unlearned model with a reference trained on the same classes."
        )
    names_a, names_b = named_labels(config_a), named_labels(config_b)
    if names_a is not None and names_b is not None and names_a != names_b:
        diff = {k: (names_a.get(k), names_b.get(k)) for k in sorted(set(names_a) | set(names_b))}
        diff = {k: v for k, v in diff.items() if v[0] != v[1]}
        raise ValueError(
            f"The models' id2label differ at {diff}: logit i does not mean the same class in both, "
            "so their output distributions cannot be compared."
        )


def _check_aligned(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(
            f"Expected 2-D {what} (examples × classes), got shapes {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"The two {what} have {a.shape[1]} and {b.shape[1]} columns: the models predict over "
            "different label spaces (or features of different widths)."
        )
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"The two {what} cover {a.shape[0]} and {b.shape[0]} examples; they must be the same ones."
        )
    if a.shape[0] == 0:
        raise ValueError(f"Cannot compare {what} over zero examples.")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor | float:
    if reduction == "mean":
        return values.mean().item()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


# -------------------------------------------------------------------------------- on tensors
def _js_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Per-example JS divergence (nats), computed in log space so tiny probabilities stay exact."""
    log_m = torch.logaddexp(log_p, log_q) - LN2

    def kl_to_m(log_x: torch.Tensor) -> torch.Tensor:
        x = log_x.exp()
        # 0 · log 0 = 0; without the mask it would be 0 · (−inf) = nan
        return torch.where(x > 0, x * (log_x - log_m), torch.zeros_like(x)).sum(-1)

    return (0.5 * kl_to_m(log_p) + 0.5 * kl_to_m(log_q)).clamp(0.0, LN2)


def js_divergence_from_logits(
    logits_a: torch.Tensor, logits_b: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor | float:
    """Jensen–Shannon divergence (natural log) between ``softmax(logits_a)`` and ``softmax(logits_b)``.

    ``reduction="mean"`` returns the mean over examples as a float, ``"none"`` the ``(n,)`` tensor.
    Computed in float64; every value lies in [0, ln 2].
    """
    a, b = torch.as_tensor(logits_a).double(), torch.as_tensor(logits_b).double()
    _check_aligned(a, b, "logits")
    return _reduce(_js_from_log_probs(torch.log_softmax(a, -1), torch.log_softmax(b, -1)), reduction)


def _log_normalised(probs: torch.Tensor) -> torch.Tensor:
    if (probs < 0).any() or not torch.isfinite(probs).all():
        raise ValueError("Probabilities must be finite and non-negative.")
    totals = probs.sum(-1, keepdim=True)
    if (totals <= 0).any():
        raise ValueError("Every probability vector needs positive mass.")
    return torch.log(probs / totals)


def js_divergence_from_probs(
    probs_a: torch.Tensor, probs_b: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor | float:
    """Jensen–Shannon divergence (natural log) between two sets of probability vectors.

    Rows are renormalised to sum to one (so float round-off in stored probabilities is harmless).
    """
    a, b = torch.as_tensor(probs_a).double(), torch.as_tensor(probs_b).double()
    _check_aligned(a, b, "probability vectors")
    return _reduce(_js_from_log_probs(_log_normalised(a), _log_normalised(b)), reduction)


def activation_distance_from_logits(
    logits_a: torch.Tensor, logits_b: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor | float:
    """Mean (or per-example) L2 distance between the two models' softmax probability vectors."""
    a, b = torch.as_tensor(logits_a).double(), torch.as_tensor(logits_b).double()
    _check_aligned(a, b, "logits")
    return _reduce(torch.linalg.vector_norm(a.softmax(-1) - b.softmax(-1), dim=-1), reduction)


def feature_distance(
    features_a: torch.Tensor, features_b: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor | float:
    """Mean (or per-example) L2 distance between two models' hidden representations."""
    a, b = torch.as_tensor(features_a).double(), torch.as_tensor(features_b).double()
    _check_aligned(a.flatten(1), b.flatten(1), "feature matrices")
    return _reduce(torch.linalg.vector_norm(a.flatten(1) - b.flatten(1), dim=-1), reduction)


# ----------------------------------------------------------------------- on (model, dataset)
def _pair_outputs(
    model_a: nn.Module,
    model_b: nn.Module,
    dataset,
    *,
    collate_fn: Callable | None,
    batch_size: int,
    device: torch.device | str | None,
    output_hidden_states: bool = False,
) -> tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]]:
    check_same_label_space(model_a, model_b)
    kwargs = dict(
        collate_fn=collate_fn, batch_size=batch_size, device=device, output_hidden_states=output_hidden_states
    )
    return collect_outputs(model_a, dataset, **kwargs), collect_outputs(model_b, dataset, **kwargs)


def js_divergence(
    model_a: nn.Module,
    model_b: nn.Module,
    dataset,
    *,
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Mean Jensen–Shannon divergence (nats, in [0, ln 2]) of the two models' outputs on ``dataset``.

    Raises ``ValueError`` when the models have different label spaces and
    :class:`~hf_unlearn.evaluation.MissingLabelsError` when the dataset has no label column (the
    shared prediction pass reads labels; every evaluation split has them).
    """
    out_a, out_b = _pair_outputs(
        model_a, model_b, dataset, collate_fn=collate_fn, batch_size=batch_size, device=device
    )
    return js_divergence_from_logits(out_a["logits"], out_b["logits"])


def activation_distance(
    model_a: nn.Module,
    model_b: nn.Module,
    dataset,
    *,
    on: str = "probabilities",
    collate_fn: Callable | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> float:
    """Mean L2 distance between the two models' output probabilities (or last hidden features).

    ``on="probabilities"`` (default) is the bad-teacher/SCRUB activation distance, in [0, √2];
    ``on="features"`` compares the representations fed to the classifier heads.
    Raises like :func:`js_divergence`.
    """
    if on not in ("probabilities", "features"):
        raise ValueError(f"on must be 'probabilities' or 'features', got {on!r}.")
    out_a, out_b = _pair_outputs(
        model_a,
        model_b,
        dataset,
        collate_fn=collate_fn,
        batch_size=batch_size,
        device=device,
        output_hidden_states=on == "features",
    )
    if on == "features":
        _check_aligned(out_a["logits"], out_b["logits"], "logits")
        return feature_distance(out_a["features"], out_b["features"])
    return activation_distance_from_logits(out_a["logits"], out_b["logits"])
